import type { Logger } from '../log';
import type { ProviderSet } from '../providers/types';
import { backoffMs, type RetryPolicy } from '../retry';
import type { TaskService } from '../tasks/service';
import { taskError } from '../tasks/events';
import { TERMINAL, type TaskError } from '../tasks/task';
import type { RunOutcome } from './policy';
import { finishTask } from './task-writer';

export interface SettleDeps {
  tasks: TaskService;
  providers: ProviderSet;
  /** The runner's name in leases. */
  owner: string;
  retry: RetryPolicy;
  now: () => Date;
}

const RELEASE = { lease_owner: null, lease_expires_at: null };

/**
 * Apply a run's outcome: end the task, schedule a retry, or hand it back. Each write checks
 * under the row lock that the lease is still ours (or, for a release, clears only our lease).
 */
export async function settle(deps: SettleDeps, taskId: string, outcome: RunOutcome, log: Logger): Promise<void> {
  const { tasks, owner } = deps;
  const now = deps.now().getTime();
  switch (outcome.kind) {
    case 'done':
      return;
    case 'fail':
      log.warn({ code: outcome.error.code }, 'task failed');
      return giveUp(deps, taskId, outcome.error, log, outcome.providerError ?? null);
    case 'release':
      // Handed back (shutdown, lost lease): not a failed try, so the claim's try is given
      // back, as a snooze does. Also when another process has taken the task over (its own
      // claim counted its own try); only our lease is ours to clear.
      await tasks.apply(taskId, (cur) =>
        TERMINAL.has(cur.status)
          ? null
          : { change: { attempts: Math.max(0, cur.attempts - 1), ...(cur.lease_owner === owner ? RELEASE : {}) } },
      );
      return;
    case 'snooze':
      await tasks.apply(taskId, (cur) =>
        cur.lease_owner !== owner
          ? null
          : {
              change: {
                ...RELEASE,
                attempts: Math.max(0, cur.attempts - 1),
                run_after: new Date(now + outcome.delayMs),
              },
            },
      );
      log.info({ delay_ms: outcome.delayMs, reason: outcome.reason }, 'task snoozed');
      return;
    case 'retry':
      return retryLater(deps, taskId, outcome.reason, log);
  }
}

/** A transient failure: try again after a backoff, or give up once the tries are spent. */
async function retryLater(deps: SettleDeps, taskId: string, reason: string, log: Logger): Promise<void> {
  const { tasks, owner, retry } = deps;
  const cur = await tasks.find(taskId);
  if (!cur || TERMINAL.has(cur.status) || cur.lease_owner !== owner) return;
  if (cur.attempts >= Math.min(cur.max_attempts, retry.attempts)) {
    const error = taskError(
      'retries_exhausted',
      `the generation service could not be reached after ${cur.attempts} attempts; try again later`,
    );
    return giveUp(deps, taskId, error, log, reason);
  }
  const delay = backoffMs(retry, cur.attempts);
  const runAfter = new Date(deps.now().getTime() + delay);
  await tasks.apply(taskId, (c) => (c.lease_owner !== owner ? null : { change: { ...RELEASE, run_after: runAfter } }));
  log.info({ delay_ms: delay, attempts: cur.attempts, reason }, 'task will be retried');
}

/**
 * Fail the task for good. Its prediction, if it has one, is canceled first (best effort;
 * canceling one that has ended changes nothing): no retry will follow it, so left running
 * it would only be billed, its output thrown away.
 */
async function giveUp(
  deps: SettleDeps,
  taskId: string,
  error: TaskError,
  log: Logger,
  providerError: string | null = null,
): Promise<void> {
  const holdsLease = (cur: { lease_owner: string | null }) => cur.lease_owner === deps.owner;
  const cur = await deps.tasks.find(taskId);
  if (!cur || TERMINAL.has(cur.status) || !holdsLease(cur)) return;
  if (cur.prediction_id) {
    log.info({ prediction_id: cur.prediction_id, code: error.code }, 'giving up; canceling the prediction');
    await deps.providers
      .get(cur.provider)
      ?.cancel(cur.prediction_id)
      .catch((err) => log.warn({ err: String(err), prediction_id: cur.prediction_id }, 'cancel on giving up failed'));
  }
  await finishTask(deps.tasks, taskId, holdsLease, { status: 'failed', error, providerError });
}
