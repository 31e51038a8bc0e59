import { randomBytes } from 'node:crypto';
import fs from 'node:fs';
import path from 'node:path';
import knexFactory from 'knex';
import { openDatabase, type Db } from '../../src/db';

/** The PostgreSQL the suite also runs against, when set (CI sets it). */
export const TEST_PG_URL = process.env.PYRE_TEST_DATABASE_URL || undefined;

export type Backend = 'pglite' | 'postgres';

/** The backends this run covers: PGlite always, PostgreSQL when PYRE_TEST_DATABASE_URL is set. */
export const BACKENDS: Backend[] = TEST_PG_URL ? ['pglite', 'postgres'] : ['pglite'];

export interface TestDb {
  db: Db;
  backend: Backend;
  /** For PostgreSQL: the schema this test owns (other processes pass it as searchPath). */
  schema?: string;
  /** Open another connection pool on the same database (a second gateway process's view). */
  reopen(): Db;
  drop(): Promise<void>;
}

/**
 * The run's migrated PGlite data directory (made once by tests/helpers/global-setup.ts): a new
 * embedded database copied from it skips initdb and the migrations. Pass it to openDatabase as
 * `pgliteTemplate`, and to a spawned gateway as PYRE_TEST_PGLITE_TEMPLATE.
 */
export const PGLITE_TEMPLATE = process.env.PYRE_TEST_PGLITE_TEMPLATE || undefined;

/**
 * Puts a copy of the run's migrated embedded database into `dataDir` (as its `pglite` directory),
 * for a `pyre start` or `pyre migrate` process whose test is about something else than a first
 * start: it opens an existing database (about 0.5 CPU-s) instead of running initdb (about 5).
 * Without the run's template (a suite run outside jest's global setup) it does nothing.
 */
export function seedDataDir(dataDir: string): void {
  const template = process.env.PYRE_TEST_PGLITE_TEMPLATE_DIR;
  if (template) fs.cpSync(template, path.join(dataDir, 'pglite'), { recursive: true });
}

/** A fresh database: in-memory PGlite (migrated), or a new, empty schema on the test PostgreSQL. */
export async function freshDb(backend: Backend): Promise<TestDb> {
  if (backend === 'pglite') {
    const db = openDatabase({ pgliteDir: 'memory://', pgliteTemplate: PGLITE_TEMPLATE });
    return { db, backend, reopen: () => db, drop: () => db.destroy() };
  }
  const schema = `pyre_test_${randomBytes(6).toString('hex')}`;
  const admin = knexFactory({ client: 'pg', connection: TEST_PG_URL, pool: { min: 0, max: 1 } });
  await admin.raw(`CREATE SCHEMA ${schema}`);
  const opened: Db[] = [];
  const open = () => {
    const db = openDatabase({ databaseUrl: TEST_PG_URL, searchPath: schema, pool: { min: 0, max: 10 } });
    opened.push(db);
    return db;
  };
  const db = open();
  return {
    db,
    backend,
    schema,
    reopen: open,
    drop: async () => {
      await Promise.all(opened.map((d) => d.destroy()));
      await admin.raw(`DROP SCHEMA ${schema} CASCADE`);
      await admin.destroy();
    },
  };
}
