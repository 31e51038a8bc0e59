import { randomBytes } from 'node:crypto';
import { createClient } from 'redis';
import type { Bus } from '../../src/bus/bus';
import { FramedBus } from '../../src/bus/framed';
import { PgTransport } from '../../src/bus/postgres';
import { RedisTransport } from '../../src/bus/redis';
import type { Db } from '../../src/db';
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

/**
 * Cuts every bus connection of the gateways working in `schema` (none: the database's default
 * search path), as a network drop or a broker restart would: their LISTEN connections on NOTIFY,
 * their Redis connections on Redis. Returns how many were cut.
 */
export async function cutBusConnections(db: Db, schema?: string): Promise<number> {
  const suffix = schema ? `_${schema}` : '';
  if (TEST_BUS === 'redis') {
    const redis = createClient({ url: TEST_REDIS_URL });
    await redis.connect();
    try {
      const list = await redis.sendCommand(['CLIENT', 'LIST']);
      const ids = String(list)
        .split('\n')
        .filter((l) => l.includes(` name=pyre-bus:${PREFIX}bus${suffix} `))
        .map((l) => /(?:^| )id=(\d+)/.exec(l)?.[1])
        .filter((id): id is string => id !== undefined);
      for (const id of ids) await redis.sendCommand(['CLIENT', 'KILL', 'ID', id]);
      return ids.length;
    } finally {
      await redis.close();
    }
  }
  const k = await db.raw(
    'SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE query = ? AND pid <> pg_backend_pid()',
    [`LISTEN pyre_bus${suffix}`],
  );
  return k.rows.length;
}

/** The LISTEN connections (pg_stat_activity) of the gateways working in `schema`. */
export async function listenConnections(db: Db, schema: string): Promise<number> {
  const r = await db.raw('SELECT count(*)::int AS n FROM pg_stat_activity WHERE query ILIKE ?', [`LISTEN %${schema}%`]);
  return r.rows[0].n as number;
}
