import { isProviderError } from '../providers/types';
import type { TaskError } from '../tasks/task';

/** How often and how far apart a task is retried after a transient failure. Data, not code. */
export interface RetryPolicy {
  /** Runs in all, the first included. */
  maxAttempts: number;
  baseMs: number;
  maxMs: number;
}

export const DEFAULT_RETRY: RetryPolicy = { maxAttempts: 3, baseMs: 2000, maxMs: 60_000 };

/**
 * What a run ended with, as Oban's workers say it: done (the task reached an end),
 * fail (no retry can help), retry (transient), snooze (come back later without
 * counting a try), release (hand it back: shutdown or lost lease).
 */
export type RunOutcome =
  | { kind: 'done' }
  | { kind: 'fail'; error: TaskError }
  | { kind: 'retry'; reason: string }
  | { kind: 'snooze'; delayMs: number; reason: string }
  | { kind: 'release' };

/** Capped exponential backoff with full jitter. */
export function backoffMs(policy: RetryPolicy, attempt: number, random = Math.random): number {
  const cap = Math.min(policy.maxMs, policy.baseMs * 2 ** Math.max(0, attempt - 1));
  return Math.round(cap / 2 + (random() * cap) / 2);
}

/** Tells permanent from transient errors. */
export function outcomeOf(err: unknown): RunOutcome {
  if (isProviderError(err)) {
    switch (err.kind) {
      case 'permanent':
        return {
          kind: 'fail',
          error: {
            code:
              err.status === 422
                ? 'provider_invalid_input'
                : err.status === 401 || err.status === 402
                  ? 'provider_unauthorized'
                  : err.status === 404
                    ? 'provider_not_found'
                    : 'provider_rejected',
            message: err.detail ?? err.title ?? err.message,
          },
        };
      case 'rate_limited':
        return { kind: 'snooze', delayMs: err.retryAfterMs ?? 5000, reason: 'provider rate limit' };
      case 'transient':
      case 'ambiguous_create':
        return { kind: 'retry', reason: err.message };
    }
  }
  return { kind: 'retry', reason: err instanceof Error ? err.message : String(err) };
}
