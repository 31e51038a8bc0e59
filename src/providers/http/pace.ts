/**
 * Pacing for one provider client: every request to the provider's API first takes a token from
 * its budget (creates, or reads: polls, cancels, lists), shared by all the process's tasks. A
 * 429 pauses the whole client for what it asked (`Retry-After`, or the `~Ns` in its detail) and
 * empties the buckets, so the rate drops after it rather than bursting again.
 */

export type PaceKind = 'create' | 'read';

/** Requests a minute the provider allows (Replicate: 600 creates, 3,000 other requests). */
export interface PaceBudgets {
  createsPerMinute: number;
  readsPerMinute: number;
}

export const DEFAULT_BUDGETS: PaceBudgets = { createsPerMinute: 600, readsPerMinute: 3000 };

interface Waiter {
  resolve: () => void;
  reject: (reason: unknown) => void;
  signal?: AbortSignal;
  onAbort?: () => void;
  done: boolean;
}

/**
 * A token bucket that keeps any rolling minute within `perMinute`: a burst of a tenth of it
 * at once, the rest refilled evenly over the minute (burst + refill = the budget). Waiters are
 * served first come, first served, from one timer.
 */
export class TokenBucket {
  readonly burst: number;
  private readonly perMs: number;
  private tokens: number;
  private last: number;
  private readonly waiters: Waiter[] = [];
  private head = 0;
  /** Waiters served before the others (a user's cancel must not queue behind thousands of polls). */
  private readonly urgent: Waiter[] = [];
  private timer: NodeJS.Timeout | undefined;

  constructor(
    perMinute: number,
    /** No token before this time (the client's pause). */
    private readonly notBefore: () => number,
    private readonly now: () => number = Date.now,
  ) {
    this.burst = Math.max(1, Math.floor(perMinute / 10));
    this.perMs = Math.max(perMinute - this.burst, perMinute / 2) / 60_000;
    this.tokens = this.burst;
    this.last = this.now();
  }

  /** Requests waiting for a token. */
  get waiting(): number {
    return this.waiters.length - this.head + this.urgent.length;
  }

  /** Resolves when a token is ours; rejects with the signal's reason if it aborts first. */
  take(signal?: AbortSignal, urgent = false): Promise<void> {
    if (signal?.aborted) return Promise.reject(signal.reason);
    this.refill();
    if (this.waiting === 0 && this.tokens >= 1 && this.now() >= this.notBefore()) {
      this.tokens -= 1;
      return Promise.resolve();
    }
    return new Promise<void>((resolve, reject) => {
      const w: Waiter = { resolve, reject, signal, done: false };
      if (signal) {
        w.onAbort = () => {
          if (w.done) return;
          w.done = true;
          reject(signal.reason);
        };
        signal.addEventListener('abort', w.onAbort, { once: true });
      }
      (urgent ? this.urgent : this.waiters).push(w);
      this.schedule();
    });
  }

  /** Forget saved-up tokens (after a 429: no burst when the pause ends). */
  empty(): void {
    this.refill();
    this.tokens = 0;
  }

  /** Wake the waiters' timer again (the pause changed). */
  reschedule(): void {
    clearTimeout(this.timer);
    this.timer = undefined;
    this.schedule();
  }

  /** Tokens earned since the last look; none for time spent paused. */
  private refill(): void {
    const now = this.now();
    const from = Math.max(this.last, Math.min(now, this.notBefore()));
    this.tokens = Math.min(this.burst, this.tokens + Math.max(0, now - from) * this.perMs);
    this.last = now;
  }

  private schedule(): void {
    if (this.timer || this.waiting === 0) return;
    this.refill();
    const untilToken = this.tokens >= 1 ? 0 : (1 - this.tokens) / this.perMs;
    const untilResume = Math.max(0, this.notBefore() - this.now());
    this.timer = setTimeout(() => this.drain(), Math.ceil(Math.max(untilToken, untilResume)));
  }

  private drain(): void {
    this.timer = undefined;
    this.refill();
    while (this.waiting > 0 && this.now() >= this.notBefore()) {
      const w = this.urgent.length ? this.urgent[0]! : this.waiters[this.head]!;
      if (!w.done && this.tokens < 1) break;
      if (this.urgent.length) this.urgent.shift();
      else this.head++;
      if (w.done) continue;
      w.done = true;
      this.tokens -= 1;
      if (w.signal && w.onAbort) w.signal.removeEventListener('abort', w.onAbort);
      w.resolve();
    }
    if (this.head > 1024 && this.head * 2 > this.waiters.length) {
      this.waiters.splice(0, this.head);
      this.head = 0;
    }
    this.schedule();
  }
}

/** What the pace has seen: requests let through by kind, 429s, and the pauses they caused. */
export interface PaceStats {
  create: number;
  read: number;
  throttled: number;
  pausedMs: number;
}

/**
 * A budget shared with the other processes of the cluster (a token bucket in the database): 0
 * when a token was taken, else the milliseconds until one is due.
 */
export interface SharedBudget {
  take(): Promise<number>;
}

/**
 * The provider client's pace: a bucket per budget and one pause for both. With `shared` budgets
 * a request also takes a token from the cluster's bucket of its kind after this process's own
 * (one request of the process at a time waits there, in turn), so that all processes together
 * keep to the account's budget.
 */
export class ProviderPace {
  private pausedUntil = 0;
  private readonly buckets: Record<PaceKind, TokenBucket>;
  private readonly turns: Record<PaceKind, Promise<void>> = { create: Promise.resolve(), read: Promise.resolve() };
  readonly stats: PaceStats = { create: 0, read: 0, throttled: 0, pausedMs: 0 };

  constructor(
    readonly budgets: PaceBudgets = DEFAULT_BUDGETS,
    private readonly now: () => number = Date.now,
    private readonly shared: Partial<Record<PaceKind, SharedBudget>> = {},
    /** Called when a shared budget cannot be read (the database is away): the local pace holds alone. */
    private readonly onSharedError: (err: unknown) => void = () => {},
  ) {
    const notBefore = () => this.pausedUntil;
    this.buckets = {
      create: new TokenBucket(budgets.createsPerMinute, notBefore, now),
      read: new TokenBucket(budgets.readsPerMinute, notBefore, now),
    };
  }

  /** Wait for a request's turn under its budget (and any pause); `urgent` ones go first. */
  async take(kind: PaceKind, signal?: AbortSignal, urgent = false): Promise<void> {
    await this.buckets[kind].take(signal, urgent);
    const shared = this.shared[kind];
    if (shared) {
      const turn = this.turns[kind].then(() => this.takeShared(shared, signal));
      this.turns[kind] = turn.catch(() => undefined);
      await turn;
    }
    this.stats[kind]++;
  }

  /** A token from the cluster's bucket, waiting for it (and for any pause) as long as it takes. */
  private async takeShared(shared: SharedBudget, signal?: AbortSignal): Promise<void> {
    for (;;) {
      if (signal?.aborted) throw signal.reason;
      const paused = this.pausedUntil - this.now();
      let wait: number;
      try {
        wait = paused > 0 ? paused : await shared.take();
      } catch (err) {
        this.onSharedError(err);
        return;
      }
      if (wait === 0) return;
      await new Promise<void>((resolve, reject) => {
        const t = setTimeout(done, wait);
        function done() {
          signal?.removeEventListener('abort', onAbort);
          resolve();
        }
        function onAbort() {
          clearTimeout(t);
          reject(signal!.reason);
        }
        signal?.addEventListener('abort', onAbort, { once: true });
      });
    }
  }

  /** The provider answered 429: no request of any kind for `ms`, and no saved-up burst after. */
  throttled(ms: number): void {
    const until = this.now() + ms;
    this.stats.throttled++;
    if (until > this.pausedUntil) {
      this.stats.pausedMs += until - Math.max(this.pausedUntil, this.now());
      this.pausedUntil = until;
    }
    for (const b of Object.values(this.buckets)) {
      b.empty();
      b.reschedule();
    }
  }

  /** Requests waiting for their turn, by kind. */
  get waiting(): Record<PaceKind, number> {
    return { create: this.buckets.create.waiting, read: this.buckets.read.waiting };
  }
}
