import { randomBytes } from 'node:crypto';
import type { Db } from '../db';
import { PgNotifyChannel } from '../db/notify';
import { TaskRunner, type RunnerOptions } from '../runner/runner';
import type { OutputStore } from '../storage/outputs';
import type { TaskService } from '../tasks/service';
import { clusterBus } from './bus';
import type { PartContext } from './context';
import type { ProviderParts } from './provider';

/** Runner settings a caller may override (tests: poll interval, lease, retry policy). */
export type RunnerOverrides = Partial<
  Omit<RunnerOptions, 'db' | 'tasks' | 'provider' | 'openOutput' | 'outputs' | 'logger'>
>;

/**
 * The task runner, built but not started (the gateway's `start()` starts it once the HTTP server
 * listens). A task queued in this process wakes it at once, and the runners of other processes
 * through a NOTIFY (`pyre_new_work`, with PostgreSQL); with webhooks (PUBLIC_URL and a signing
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
  },
): TaskRunner {
  const { config } = ctx;
  const { tasks, provider } = opts;
  const publicUrl = config.publicUrl;
  const bus = clusterBus(opts.db);
  const newWork = bus
    ? new PgNotifyChannel<number>(
        bus.connection,
        bus.channel('pyre_new_work'),
        randomBytes(6).toString('hex'),
        ctx.logger,
      )
    : undefined;
  if (newWork) ctx.closers.push('new-work signal', () => newWork.close());
  const runner = new TaskRunner({
    db: opts.db,
    tasks,
    provider: provider.provider,
    openOutput: (url, o) => provider.provider.openOutput(url, o),
    outputs: opts.outputs,
    logger: ctx.logger.child({ component: 'runner' }),
    concurrency: config.runner.concurrency,
    ...(publicUrl && provider.webhookSecret()
      ? { webhookUrl: (taskId: string) => `${publicUrl}/api/webhooks/replicate?task_id=${taskId}` }
      : {}),
    newWork,
    now: ctx.now,
    ...opts.overrides,
  });
  return runner;
}
