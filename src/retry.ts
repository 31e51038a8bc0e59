/**
 * How often and how far apart something is tried again after a transient failure, as data:
 * try n waits about min(maxMs, baseMs * 2^(n-1)). The provider client retries its calls with one,
 * the runner its tasks with another.
 */
export interface RetryPolicy {
  /** Tries in all, the first included (1 = no retry). */
  attempts: number;
  baseMs: number;
  maxMs: number;
}

/** The wait after try `attempt` (from 1): capped exponential backoff, jittered over its upper half. */
export function backoffMs(policy: RetryPolicy, attempt: number, random: () => number = Math.random): number {
  const cap = Math.min(policy.maxMs, policy.baseMs * 2 ** Math.max(0, attempt - 1));
  return Math.round(cap / 2 + (random() * cap) / 2);
}

/** Registers a sleeper's early wake-up; returns how to unregister it (or wakes it at once). */
export type OnWake = (wake: () => void) => (() => void) | void;

/**
 * Wait `ms`; rejects with the signal's reason when it aborts. `onWake` lets someone end the
 * wait early (resolved, as if the time had passed): the runner's poll is woken by a webhook.
 */
export function sleep(ms: number, signal?: AbortSignal, onWake?: OnWake): Promise<void> {
  return new Promise<void>((resolve, reject) => {
    if (signal?.aborted) return reject(signal.reason);
    let settled = false;
    let unregister: (() => void) | undefined;
    const settle = (end: () => void) => {
      settled = true;
      clearTimeout(timer);
      signal?.removeEventListener('abort', onAbort);
      unregister?.();
      end();
    };
    const onAbort = () => settle(() => reject(signal!.reason));
    const timer = setTimeout(() => settle(resolve), ms);
    signal?.addEventListener('abort', onAbort, { once: true });
    // A wake-up may come at once (inside onWake), before there is anything to unregister.
    const off = onWake?.(() => settle(resolve));
    if (off) {
      if (settled) off();
      else unregister = off;
    }
  });
}
