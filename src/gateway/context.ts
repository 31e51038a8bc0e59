import type { Config } from '../config';
import type { Logger } from '../log';
import type { Closers } from './closers';

/** What every part of the gateway is built with: the config, the logger, the clock, and the shutdown stack. */
export interface PartContext {
  config: Config;
  logger: Logger;
  now?: () => Date;
  /** Each part registers how it stops as it starts. */
  closers: Closers;
}
