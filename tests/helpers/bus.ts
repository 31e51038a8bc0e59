import { randomBytes } from 'node:crypto';
import type { Bus } from '../../src/bus/bus';
import { FramedBus } from '../../src/bus/framed';
import { PgTransport } from '../../src/bus/postgres';
import { RedisTransport } from '../../src/bus/redis';
import { silentLogger, type Logger } from '../../src/log';
import { TEST_PG_URL } from './db';

/**
 * The cluster bus the multi-process suites run on: PYRE_TEST_BUS=redis puts every gateway that
 * shares a PostgreSQL schema on Redis (PYRE_TEST_REDIS_URL, default the local one) instead of
 * the database's NOTIFY; unset or `postgres`, NOTIFY. Embedded PGlite gateways have no bus.
 */
export const TEST_BUS = (() => {
  const v = process.env.PYRE_TEST_BUS || 'postgres';
  if (v !== 'postgres' && v !== 'redis') throw new Error(`PYRE_TEST_BUS: must be postgres or redis, not ${v}`);
  return v;
})();

/** The Redis of the Redis suites. */
export const TEST_REDIS_URL = process.env.PYRE_TEST_REDIS_URL || 'redis://127.0.0.1:6379';

/** One prefix per test file: its processes hear each other, and no other run's. */
const PREFIX = `pyre_test_${randomBytes(4).toString('hex')}:`;

/** The environment that puts a PostgreSQL gateway on the run's bus engine (nothing for NOTIFY). */
export function testBusEnv(): Record<string, string> {
  return TEST_BUS === 'redis' ? { BUS_URL: TEST_REDIS_URL, BUS_PREFIX: PREFIX } : {};
}

/**
 * A bare bus on the run's engine (no gateway), on channel `name` (a NOTIFY identifier; on Redis,
 * after the file's prefix): the realtime-library suites put their nodes on it. Not started.
 */
export function testBus(name: string, engine: 'postgres' | 'redis' = TEST_BUS, logger: Logger = silentLogger()): Bus {
  if (engine === 'redis') return new FramedBus(new RedisTransport(TEST_REDIS_URL, `${PREFIX}${name}`, logger), logger);
  if (!TEST_PG_URL) throw new Error('testBus: the postgres engine needs PYRE_TEST_DATABASE_URL');
  return new FramedBus(new PgTransport(TEST_PG_URL, name, logger), logger);
}
