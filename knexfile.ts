// For the knex CLI (`npx knex migrate:status --knexfile knexfile.ts`); pyre itself
// migrates at start and with `pyre migrate`, from the same migration list.
import path from 'node:path';
import type { Knex } from 'knex';
import ClientPgLite from 'knex-pglite';
import { migrationSource } from './src/db';

const config: Knex.Config = process.env.DATABASE_URL
  ? { client: 'pg', connection: process.env.DATABASE_URL, migrations: { migrationSource } }
  : ({
      client: ClientPgLite as unknown as Knex.Config['client'],
      dialect: 'postgres',
      connection: { filename: path.resolve(process.env.DATA_DIR ?? './data', 'pglite') },
      migrations: { migrationSource },
    } as Knex.Config);

export default config;
