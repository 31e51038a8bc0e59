/**
 * The stand-in's sense of time. Predictions move through their timelines as this clock moves;
 * a VirtualClock moves only when a test advances it, a RealClock follows wall time at a speed.
 */
export interface StandinClock {
  readonly kind: 'virtual' | 'real';
  /** Milliseconds since the epoch, in simulated time. */
  now(): number;
  /** Called after time has moved; returns an unsubscribe function. */
  onTick(listener: () => void): () => void;
  /** Resolves once `now() >= at` (checked on every tick); rejects if the signal aborts. */
  waitUntil(at: number, signal?: AbortSignal): Promise<void>;
  stop(): void;
}

abstract class BaseClock {
  private readonly listeners = new Set<() => void>();

  abstract now(): number;

  onTick(listener: () => void): () => void {
    this.listeners.add(listener);
    return () => this.listeners.delete(listener);
  }

  protected tick(): void {
    for (const l of [...this.listeners]) {
      try {
        l();
      } catch {
        /* a listener's failure must not stop time */
      }
    }
  }

  waitUntil(at: number, signal?: AbortSignal): Promise<void> {
    if (this.now() >= at) return Promise.resolve();
    return new Promise((resolve, reject) => {
      const off = this.onTick(() => {
        if (this.now() >= at) {
          off();
          signal?.removeEventListener('abort', onAbort);
          resolve();
        }
      });
      const onAbort = () => {
        off();
        reject(signal!.reason ?? new Error('aborted'));
      };
      if (signal?.aborted) onAbort();
      else signal?.addEventListener('abort', onAbort, { once: true });
    });
  }
}

/** Time stands still until `advance` is called. Starts at the real current time by default. */
export class VirtualClock extends BaseClock implements StandinClock {
  readonly kind = 'virtual' as const;
  private t: number;

  constructor(start: number = Date.now()) {
    super();
    this.t = start;
  }

  now(): number {
    return this.t;
  }

  /**
   * Moves time forward in steps (<= `stepMs`, default 250 ms, at most 2000 steps), ticking after
   * each so every intermediate state (webhook events, stream tokens) is seen in order. Resolves
   * after the last step, once pending I/O callbacks have had a turn.
   */
  async advance(ms: number, opts: { stepMs?: number } = {}): Promise<void> {
    if (!(ms >= 0)) throw new Error(`advance: bad duration ${ms}`);
    const end = this.t + ms;
    const step = Math.max(opts.stepMs ?? 250, ms / 2000, 1);
    while (this.t < end) {
      this.t = Math.min(end, this.t + step);
      this.tick();
      await new Promise<void>((r) => setImmediate(r));
    }
    if (ms === 0) this.tick();
  }

  /** Jumps straight to a time (never backwards), with one tick. */
  set(at: number): void {
    if (at < this.t) throw new Error('VirtualClock cannot go backwards');
    this.t = at;
    this.tick();
  }

  stop(): void {}
}

/** Wall time multiplied by `speed` (2 = twice as fast), ticking every `tickMs` of real time. */
export class RealClock extends BaseClock implements StandinClock {
  readonly kind = 'real' as const;
  private readonly origin = Date.now();
  private readonly timer: NodeJS.Timeout;

  constructor(
    readonly speed = 1,
    tickMs = 50,
  ) {
    super();
    if (!(speed > 0)) throw new Error(`RealClock: speed must be > 0, got ${speed}`);
    this.timer = setInterval(() => this.tick(), tickMs);
    this.timer.unref();
  }

  now(): number {
    return this.origin + (Date.now() - this.origin) * this.speed;
  }

  stop(): void {
    clearInterval(this.timer);
  }
}
