import fs from 'node:fs';
import path from 'node:path';
import knexFactory, { type Knex } from 'knex';
import ClientPgLite from 'knex-pglite';
import { migrations } from '../../migrations';

export type Db = Knex;

export interface DatabaseOptions {
  /** postgres:// URL; when absent the embedded PGlite database is used. */
  databaseUrl?: string;
  /** Directory of the embedded database (ignored with databaseUrl). `memory://` keeps it in memory. */
  pgliteDir?: string;
  /** A PostgreSQL schema to work in (tests use one per run). */
  searchPath?: string;
  pool?: { min: number; max: number };
}

/** The migration source shared by `pyre migrate`, start-up and knexfile.ts. */
export const migrationSource: Knex.MigrationSource<[string, Knex.Migration]> = {
  getMigrations: async () => [...migrations],
  getMigrationName: ([name]) => name,
  getMigration: async ([, migration]) => migration,
};

/** Open the database through knex: PostgreSQL through pg, or embedded PGlite. */
export function openDatabase(opts: DatabaseOptions): Db {
  if (opts.databaseUrl) {
    return knexFactory({
      client: 'pg',
      connection: opts.databaseUrl,
      searchPath: opts.searchPath ? [opts.searchPath] : undefined,
      pool: opts.pool ?? { min: 0, max: 20 },
    });
  }
  const dir = opts.pgliteDir ?? './data/pglite';
  const connection = (dir === 'memory://' ? {} : { filename: dir }) as Knex.StaticConnectionConfig;
  if (dir !== 'memory://') fs.mkdirSync(path.dirname(path.resolve(dir)), { recursive: true });
  return knexFactory({ client: ClientPgLite as unknown as typeof knexFactory.Client, dialect: 'postgres', connection });
}

/** Whether this knex instance talks to embedded PGlite (one connection, one process). */
export function isEmbedded(db: Db): boolean {
  return db.client.config.client !== 'pg';
}

/** Bring the schema up to date. Safe to run from several processes at once (knex takes a lock). */
export async function migrate(db: Db): Promise<string[]> {
  const [, applied] = (await db.migrate.latest({ migrationSource })) as [number, string[]];
  return applied;
}
