import type pg from 'pg';
import type { Config } from '../config';
import { isEmbedded, type Db } from '../db';
import type { Logger } from '../log';
import type { Bus } from './bus';
import { FramedBus } from './framed';
import { MemoryBusHub } from './memory';
import { PgTransport } from './postgres';
import type { RedisTransport } from './redis';

/**
 * The suffix of a database's bus channel: its knex search path when there is one, so that
 * processes working in different schemas of one database (the test suites) do not hear each
 * other, on either engine.
 */
export function busNamespace(db: Db): string {
  const searchPath = [(db.client.config as { searchPath?: string[] | string }).searchPath ?? []].flat()[0];
  return searchPath ? `_${searchPath.toLowerCase()}` : '';
}

/**
 * The configured bus (not started): Redis when BUS_URL is set; else the database's NOTIFY on
 * PostgreSQL; else none (embedded PGlite belongs to one process).
 */
export function openBus(db: Db, settings: Config['bus'], logger: Logger): Bus | undefined {
  const log = logger.child({ component: 'bus' });
  const suffix = busNamespace(db);
  if (settings.url) {
    // Loaded only when configured: the Redis client is over 500 modules (every gateway, and so
    // every test suite, would load it).
    // eslint-disable-next-line @typescript-eslint/no-require-imports -- lazy loading, see above
    const { RedisTransport: Transport } = require('./redis') as { RedisTransport: typeof RedisTransport };
    return new FramedBus(new Transport(settings.url, `${settings.prefix}bus${suffix}`, log), log);
  }
  if (isEmbedded(db)) return undefined;
  const connection = (db.client.config as { connection: string | pg.ClientConfig }).connection;
  return new FramedBus(new PgTransport(connection, `pyre_bus${suffix}`, log), log);
}

/** A bus between the gateways of one process that share `hub` (tests). */
export function memoryBus(hub: MemoryBusHub, logger: Logger): Bus {
  return new FramedBus(hub.transport(), logger.child({ component: 'bus' }));
}

export { MemoryBusHub };
