import type { Db } from '../db';
import { TaskRunner, type RunnerOptions } from '../runner/runner';
import type { OutputStore } from '../storage/outputs';
import type { TaskService } from '../tasks/service';
import type { PartContext } from './context';
import type { ProviderParts } from './provider';

/** Runner settings a caller may override (tests: poll interval, lease, retry policy). */
export type RunnerOverrides = Partial<Omit<RunnerOptions, 'db' | 'tasks' | 'providers' | 'outputs' | 'logger'>>;

/**
 * The task runner, built but not started (the gateway's `start()` starts it once the HTTP server
 * listens). A task queued in this process wakes it at once, and the runners of other processes
 * through the cluster bus (its `new_work` topic); with webhooks (PUBLIC_URL and a signing
 * secret) the provider is asked to call back, and polling stays on as the safety net.
 */
export function createRunner(
  ctx: PartContext,
  opts: {
    db: Db;
    tasks: TaskService;
    provider: ProviderParts;
    outputs: OutputStore;
    overrides?: RunnerOverrides;
    /** The cluster bus's wake-up for other processes' runners (PostgreSQL only). */
    newWork?: RunnerOptions['newWork'];
  },
): TaskRunner {
  const { config } = ctx;
  const { tasks, provider } = opts;
  const publicUrl = config.publicUrl;
  const runner = new TaskRunner({
    db: opts.db,
    tasks,
    providers: provider.clients,
    outputs: opts.outputs,
    logger: ctx.logger.child({ component: 'runner' }),
    concurrency: config.runner.concurrency,
    globalConcurrency: config.runner.global,
    userConcurrency: config.runner.perUser,
    modelConcurrency: config.runner.perModel,
    ...(publicUrl
      ? {
          // Only to providers that send webhooks and whose signing secret is known.
          webhookUrl: (taskId: string, id: string) =>
            provider.running.get(id)?.webhooks?.enabled()
              ? `${publicUrl}/api/webhooks/${encodeURIComponent(id)}?task_id=${taskId}`
              : undefined,
        }
      : {}),
    now: ctx.now,
    ...(opts.newWork ? { newWork: opts.newWork } : {}),
    ...opts.overrides,
  });
  return runner;
}
