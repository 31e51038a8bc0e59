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
 * Most of what the realtime layer logs is caused by clients (malformed frames, crashed channels,
 * refused connects, floods), and one client can cause hundreds of lines a second. This writes at
 * most `lines` lines of each message (per level) per `intervalMs`; the rest are counted, and the
 * first line of the next window carries `suppressed: n`. Messages are fixed strings, so the
 * table of windows stays small.
 */
export class RateLimitedLogger implements RealtimeLogger {
  private readonly windows = new Map<string, { start: number; written: number; suppressed: number }>();

  constructor(
    private readonly inner: RealtimeLogger,
    private readonly limit: LogLimit,
    private readonly now: () => number = Date.now,
  ) {}

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
    const key = `${level}\u0000${msg ?? ''}`;
    const now = this.now();
    let w = this.windows.get(key);
    if (w === undefined || now - w.start >= this.limit.intervalMs) {
      const suppressed = w?.suppressed ?? 0;
      w = { start: now, written: 0, suppressed: 0 };
      this.windows.set(key, w);
      if (suppressed > 0) obj = { ...obj, suppressed };
    }
    if (w.written >= this.limit.lines) {
      w.suppressed++;
      return;
    }
    w.written++;
    this.inner[level](obj, msg);
  }
}
