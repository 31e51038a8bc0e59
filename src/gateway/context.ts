import type { Config } from '../config';
import type { Logger } from '../log';
import type { LogLimit } from '../realtime';
import type { Closers } from './closers';

/** What every part of the gateway is built with: the config, the logger, the clock, and the shutdown stack. */
export interface PartContext {
  config: Config;
  logger: Logger;
  now?: () => Date;
  /** Each part registers how it stops as it starts. */
  closers: Closers;
}

/** CLIENT_LOG_LINES_PER_10S as the realtime layer's and the access log's limit (false: none). */
export function clientLogLimit(config: Pick<Config, 'clientLogLinesPer10s'>): LogLimit | false {
  return config.clientLogLinesPer10s === 0 ? false : { lines: config.clientLogLinesPer10s, intervalMs: 10_000 };
}
