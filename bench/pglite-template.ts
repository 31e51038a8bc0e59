/**
 * What a test database costs: a fresh embedded PGlite (initdb + migrations) against one started
 * from a migrated template (openDatabase's `pgliteTemplate`, as tests/helpers/global-setup.ts
 * makes it). Prints milliseconds per open, alternating the two. `npx tsx bench/pglite-template.ts [rounds]`
 */
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { migrate, openDatabase } from '../src/db';

async function timed(opts: Parameters<typeof openDatabase>[0]): Promise<number> {
  const t = process.hrtime.bigint();
  const db = openDatabase(opts);
  await migrate(db);
  await db('tasks').count();
  const ms = Number(process.hrtime.bigint() - t) / 1e6;
  await db.destroy();
  return ms;
}

async function main(): Promise<void> {
  const rounds = Number(process.argv[2] ?? 3);
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'pyre-bench-template-'));
  const file = path.join(dir, 'pglite.tar');
  const { PGlite } = await import('@electric-sql/pglite');
  const pglite = new PGlite();
  await pglite.waitReady;
  const knex = (await import('knex')).default;
  const ClientPgLite = (await import('knex-pglite')).default;
  const db = knex({
    client: ClientPgLite as unknown as typeof knex.Client,
    dialect: 'postgres',
    connection: { pglite } as never,
  });
  await migrate(db);
  await pglite.query('CHECKPOINT');
  fs.writeFileSync(file, Buffer.from(await (await pglite.dumpDataDir('none')).arrayBuffer()));
  await db.destroy();
  const fresh: number[] = [];
  const templ: number[] = [];
  for (let i = 0; i < rounds; i++) {
    fresh.push(await timed({ pgliteDir: 'memory://' }));
    templ.push(await timed({ pgliteDir: 'memory://', pgliteTemplate: file }));
  }
  fs.rmSync(dir, { recursive: true, force: true });
  const fmt = (xs: number[]) => xs.map((x) => Math.round(x)).join(', ');
  console.log(`fresh PGlite + migrate, ms:   ${fmt(fresh)}`);
  console.log(`from the template + migrate:  ${fmt(templ)}`);
}

void main();
