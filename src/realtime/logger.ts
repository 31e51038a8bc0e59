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
