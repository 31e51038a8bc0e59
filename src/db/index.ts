import fs from 'node:fs';
import path from 'node:path';
import { PGlite } from '@electric-sql/pglite';
import knexFactory, { type Knex } from 'knex';
import ClientPgLite from 'knex-pglite';
import { migrations } from '../../migrations';

export type Db = Knex;

export interface DatabaseOptions {
  /** postgres:// URL; when absent the embedded PGlite database is used. */
  databaseUrl?: string;
  /** Directory of the embedded database (ignored with databaseUrl). `memory://` keeps it in memory. */
  pgliteDir?: string;
  /**
   * A file holding a PGlite data directory as PGlite's `dumpDataDir()` writes it: a new embedded
   * database starts as a copy of it instead of running initdb (ignored when the directory already
   * holds a database). Tests migrate one database per run and start every other from it.
   */
  pgliteTemplate?: string;
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

/**
 * How long a PostgreSQL outage may hold a request before it fails (and REST answers 503):
 * opening a connection gives up after CONNECT_TIMEOUT_MS (an unreachable host; a stopped server
 * refuses at once), waiting for a pooled connection after ACQUIRE_TIMEOUT_MS, and a statement
 * after STATEMENT_TIMEOUT_MS (server side) or QUERY_TIMEOUT_MS (client side: a connection that
 * went silent, e.g. a network cut, is given up even though no TCP error came).
 */
export const DB_TIMEOUTS = {
  CONNECT_TIMEOUT_MS: 3000,
  ACQUIRE_TIMEOUT_MS: 10_000,
  STATEMENT_TIMEOUT_MS: 15_000,
  QUERY_TIMEOUT_MS: 20_000,
} as const;

/** Open the database through knex: PostgreSQL through pg, or embedded PGlite. */
export function openDatabase(opts: DatabaseOptions): Db {
  if (opts.databaseUrl) {
    return knexFactory({
      client: 'pg',
      connection: {
        connectionString: opts.databaseUrl,
        connectionTimeoutMillis: DB_TIMEOUTS.CONNECT_TIMEOUT_MS,
        statement_timeout: DB_TIMEOUTS.STATEMENT_TIMEOUT_MS,
        query_timeout: DB_TIMEOUTS.QUERY_TIMEOUT_MS,
        keepAlive: true,
      } as Knex.PgConnectionConfig,
      acquireConnectionTimeout: DB_TIMEOUTS.ACQUIRE_TIMEOUT_MS,
      searchPath: opts.searchPath ? [opts.searchPath] : undefined,
      // knex puts an 'error' listener on each pooled pg client (a dropped connection is discarded).
      pool: opts.pool ?? { min: 0, max: 20 },
    });
  }
  const dir = opts.pgliteDir ?? './data/pglite';
  const inMemory = dir === 'memory://';
  let release = () => {};
  if (!inMemory) {
    fs.mkdirSync(path.dirname(path.resolve(dir)), { recursive: true });
    release = lockEmbeddedDir(dir);
  }
  let connection = (inMemory ? {} : { filename: dir }) as Knex.StaticConnectionConfig;
  if (opts.pgliteTemplate && (inMemory || !fs.existsSync(path.join(dir, 'PG_VERSION')))) {
    let template: Buffer;
    try {
      template = fs.readFileSync(opts.pgliteTemplate);
    } catch (err) {
      release();
      throw new Error(`cannot read the PGlite template ${opts.pgliteTemplate}: ${(err as Error).message}`, {
        cause: err,
      });
    }
    const loadDataDir = new Blob([template]);
    // Options as the one argument: PGlite ignores the second when the first is not a string.
    const pglite = new PGlite(inMemory ? { loadDataDir } : { dataDir: dir, loadDataDir });
    connection = { pglite } as unknown as Knex.StaticConnectionConfig;
  }
  const db = knexFactory({
    client: ClientPgLite as unknown as typeof knexFactory.Client,
    dialect: 'postgres',
    connection,
  });
  // knex's destroy() ends in client.destroy(): the lock goes with the connection.
  const client = db.client as { destroy: (...args: unknown[]) => Promise<unknown> };
  const destroyClient = client.destroy.bind(client);
  client.destroy = (...args: unknown[]) => destroyClient(...args).finally(release);
  return db;
}

const isAlive = (pid: number): boolean => {
  try {
    process.kill(pid, 0);
    return true;
  } catch (err) {
    return (err as NodeJS.ErrnoException).code === 'EPERM';
  }
};

/** The embedded database's directory is held by another live process (a user's mistake, said in one line). */
export class EmbeddedDatabaseInUseError extends Error {
  constructor(
    message: string,
    readonly pid: number,
  ) {
    super(message);
    this.name = 'EmbeddedDatabaseInUseError';
  }
}

/**
 * The embedded database is one process's: a second one opening the same directory would corrupt
 * it (PGlite aborts deep in WebAssembly). A lock file next to it names the holder's pid; a lock
 * whose process is gone (killed, or a container restarted) is taken over. Returns the release.
 */
export function lockEmbeddedDir(dir: string): () => void {
  const file = `${path.resolve(dir)}.lock`;
  for (let attempt = 0; attempt < 2; attempt++) {
    try {
      fs.writeFileSync(file, String(process.pid), { flag: 'wx' });
      let held = true;
      const release = () => {
        if (!held) return;
        held = false;
        process.off('exit', release);
        fs.rmSync(file, { force: true });
      };
      process.on('exit', release);
      return release;
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== 'EEXIST') throw err;
      const pid = Number(fs.readFileSync(file, 'utf8').trim());
      if (Number.isInteger(pid) && pid > 0 && pid !== process.pid && isAlive(pid)) {
        throw new EmbeddedDatabaseInUseError(
          `the embedded database ${path.resolve(dir)} is in use by another pyre process (pid ${pid}): ` +
            'stop it, give this one its own DATA_DIR, or use PostgreSQL (DATABASE_URL) to run several processes',
          pid,
        );
      }
      fs.rmSync(file, { force: true }); // left by a process that is gone
    }
  }
  throw new Error(`could not lock the embedded database ${path.resolve(dir)} (${file})`);
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
