/**
 * The subset of pino's API the realtime layer logs through. A pino Logger fits as is;
 * the default drops everything.
 */
export interface RealtimeLogger {
  debug(obj: object, msg?: string): void;
  info(obj: object, msg?: string): void;
  warn(obj: object, msg?: string): void;
  error(obj: object, msg?: string): void;
}

const noop = (): void => {};

export const silentRealtimeLogger: RealtimeLogger = { debug: noop, info: noop, warn: noop, error: noop };

/** How many lines of one message may be written per window (see {@link RateLimitedLogger}). */
export interface LogLimit {
  lines: number;
  intervalMs: number;
}

/**
 * Lines allowed per key per window: `take(key)` says whether a line under `key` may be written
 * now. At most `lines` per `intervalMs` per key; the rest are counted, and the first line of the
 * key's next window learns how many were left out. Keys are bounded: past `maxKeys` the windows
 * that ended are forgotten (and if all are current, all of them: the limit restarts).
 */
export class LineBudget {
  private readonly windows = new Map<string, { start: number; written: number; suppressed: number }>();

  constructor(
    private readonly limit: LogLimit,
    private readonly now: () => number = Date.now,
    private readonly maxKeys = 10_000,
  ) {}

  /** null: leave this line out. Otherwise write it, with the number left out before it under this key (0: none). */
  take(key: string): number | null {
    const now = this.now();
    let w = this.windows.get(key);
    let suppressed = 0;
    if (w === undefined || now - w.start >= this.limit.intervalMs) {
      suppressed = w?.suppressed ?? 0;
      if (w === undefined && this.windows.size >= this.maxKeys) this.forgetEnded(now);
      w = { start: now, written: 0, suppressed: 0 };
      this.windows.set(key, w);
    }
    if (w.written >= this.limit.lines) {
      w.suppressed++;
      return null;
    }
    w.written++;
    return suppressed;
  }

  private forgetEnded(now: number): void {
    for (const [k, v] of this.windows) if (now - v.start >= this.limit.intervalMs) this.windows.delete(k);
    if (this.windows.size >= this.maxKeys) this.windows.clear();
  }
}

/**
 * Most of what the realtime layer logs is caused by clients (malformed frames, crashed channels,
 * refused connects, floods), and one client can cause hundreds of lines a second. This writes at
 * most `lines` lines of each message (per level) per `intervalMs`; the rest are counted, and the
 * first line of the next window carries `suppressed: n`. Messages are fixed strings, so the
 * table of windows stays small.
 */
export class RateLimitedLogger implements RealtimeLogger {
  private readonly budget: LineBudget;

  constructor(
    private readonly inner: RealtimeLogger,
    limit: LogLimit,
    now: () => number = Date.now,
  ) {
    this.budget = new LineBudget(limit, now);
  }

  debug(obj: object, msg?: string): void {
    this.write('debug', obj, msg);
  }
  info(obj: object, msg?: string): void {
    this.write('info', obj, msg);
  }
  warn(obj: object, msg?: string): void {
    this.write('warn', obj, msg);
  }
  error(obj: object, msg?: string): void {
    this.write('error', obj, msg);
  }

  private write(level: keyof RealtimeLogger, obj: object, msg: string | undefined): void {
    const suppressed = this.budget.take(`${level}\u0000${msg ?? ''}`);
    if (suppressed === null) return;
    this.inner[level](suppressed > 0 ? { ...obj, suppressed } : obj, msg);
  }
}
