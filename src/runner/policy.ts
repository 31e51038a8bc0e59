import { isDatabaseUnavailable } from './database';
import { isProviderError } from '../providers/types';
import type { RetryPolicy } from '../retry';
import type { TaskError } from '../tasks/task';
import { refusedRequest } from './failure';
import { taskError } from '../tasks/events';

export type { RetryPolicy } from '../retry';

/** A task's runs in all (the first included) and how far apart its retries are. */
export const DEFAULT_RETRY: RetryPolicy = { attempts: 3, baseMs: 2000, maxMs: 60_000 };

/**
 * How much the runner follows at once. A prediction in flight costs a timer and an occasional
 * request, so the caps are sized for waiting, not for work: this process, all processes on the
 * database, one user, one model (the last three counted by the claim over all processes).
 */
export const DEFAULT_LIMITS = {
  concurrency: 2000,
  globalConcurrency: 5000,
  userConcurrency: 200,
  modelConcurrency: 2000,
};

/** Poll intervals: fast at first, slower for long runs; where webhooks deliver everything, polls are a rare safety net. */
export const DEFAULT_POLLING = { pollIntervalMs: 1000, pollMaxIntervalMs: 30_000, webhookPollIntervalMs: 60_000 };

/**
 * How long to wait before the next poll of a prediction followed for `ageMs`: a tenth of its age,
 * between the first interval and the longest (a 3-minute video is polled every 18 s by its end,
 * so it is seen done at most a tenth of its run late). Where webhook deliveries carry everything
 * (text: outputs and logs), at least `webhookPollIntervalMs`. A delivery ends the wait at once.
 */
export function pollDelayMs(
  ageMs: number,
  p: { pollIntervalMs: number; pollMaxIntervalMs: number; webhookPollIntervalMs: number },
  deliveriesCarryAll: boolean,
): number {
  const grown = Math.max(p.pollIntervalMs, Math.min(p.pollMaxIntervalMs, ageMs / 10));
  return deliveriesCarryAll ? Math.max(grown, p.webhookPollIntervalMs) : grown;
}

/** How long a run that lost the database waits before it is claimed again (a try is not counted). */
export const DATABASE_SNOOZE_MS = 1000;

/**
 * What a run ended with, as Oban's workers say it: done (the task reached an end),
 * fail (no retry can help), retry (transient), snooze (come back later without
 * counting a try), release (hand it back: shutdown or lost lease).
 */
export type RunOutcome =
  | { kind: 'done' }
  | { kind: 'fail'; error: TaskError; providerError?: string | null }
  | { kind: 'retry'; reason: string }
  | { kind: 'snooze'; delayMs: number; reason: string }
  | { kind: 'release' };

/**
 * Tells permanent from transient errors. A database that went away is not the task's failure:
 * the run comes back later without counting a try (its prediction, if any, is resumed).
 */
export function outcomeOf(err: unknown): RunOutcome {
  if (!isProviderError(err) && isDatabaseUnavailable(err))
    return { kind: 'snooze', delayMs: DATABASE_SNOOZE_MS, reason: 'database unavailable' };
  if (isProviderError(err)) {
    switch (err.kind) {
      case 'permanent':
        return { kind: 'fail', ...refusedRequest(err) };
      case 'interrupted':
        return { kind: 'fail', error: taskError('completion_interrupted'), providerError: err.message };
      case 'rate_limited':
        return { kind: 'snooze', delayMs: err.retryAfterMs ?? 5000, reason: 'provider rate limit' };
      case 'transient':
      case 'ambiguous_create':
        return { kind: 'retry', reason: err.message };
    }
  }
  return { kind: 'retry', reason: err instanceof Error ? err.message : String(err) };
}
