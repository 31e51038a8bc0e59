import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { PGlite } from '@electric-sql/pglite';
import knexFactory from 'knex';
import ClientPgLite from 'knex-pglite';
import { migrate } from '../../src/db';

/** Where the run's migrated PGlite template is; tests/helpers/db.ts and spawned gateways read it. */
export const TEMPLATE_ENV = 'PYRE_TEST_PGLITE_TEMPLATE';

/**
 * Runs once before every suite (jest `globalSetup`).
 * - Says which database backends this run covers, so that a run without PostgreSQL does not pass
 *   silently for one that tested both.
 * - Makes one migrated PGlite database and dumps it to a file: a fresh PGlite runs initdb, which
 *   costs seconds, and the suites open dozens. Every test database starts as a copy of this one
 *   (openDatabase's `pgliteTemplate`). Workers inherit the variable naming it.
 */
export default async function globalSetup(): Promise<void> {
  if (!process.env.PYRE_TEST_DATABASE_URL) {
    process.stdout.write(
      '\npyre tests: PGlite only; the PostgreSQL half (and the database outage suite) is skipped. To include it: ' +
        'PYRE_TEST_DATABASE_URL=postgres://user@host:5432/db npm test\n',
    );
  }
  const pglite = new PGlite();
  // initdb can take longer than knex's 60 s wait for a connection on a loaded machine.
  await pglite.waitReady;
  const db = knexFactory({
    client: ClientPgLite as unknown as typeof knexFactory.Client,
    dialect: 'postgres',
    connection: { pglite } as unknown as knexFactory.Knex.StaticConnectionConfig,
  });
  try {
    await migrate(db);
    await pglite.query('CHECKPOINT');
    const dump = await pglite.dumpDataDir('none');
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'pyre-test-template-'));
    const file = path.join(dir, 'pglite.tar');
    fs.writeFileSync(file, Buffer.from(await dump.arrayBuffer()));
    process.env[TEMPLATE_ENV] = file;
  } finally {
    await db.destroy();
  }
}
