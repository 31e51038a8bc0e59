import { createHash } from 'node:crypto';
import fs from 'node:fs';
import path from 'node:path';
import { PGlite } from '@electric-sql/pglite';
import { transformFileSync } from '@swc/core';
import knexFactory from 'knex';
import ClientPgLite from 'knex-pglite';
import { migrate } from '../../src/db';

/** Where the run's migrated PGlite template is; tests/helpers/db.ts and spawned gateways read it. */
export const TEMPLATE_ENV = 'PYRE_TEST_PGLITE_TEMPLATE';
/** The same database unpacked, as a DATA_DIR's `pglite` directory (tests/helpers/db.ts `seedDataDir`). */
export const TEMPLATE_DIR_ENV = 'PYRE_TEST_PGLITE_TEMPLATE_DIR';
/** The sources compiled to JavaScript for spawned fixtures (tests/helpers/gateway-process.ts). */
export const COMPILED_ENV = 'PYRE_TEST_COMPILED_DIR';

const ROOT = path.join(__dirname, '..', '..');
/** Templates kept between runs, one per key (a fresh clone, CI, makes its own on its first run). */
const CACHE = path.join(ROOT, 'node_modules', '.cache', 'pyre-tests');

/**
 * Runs once before every suite (jest `globalSetup`).
 * - Says which database backends this run covers, so that a run without PostgreSQL does not pass
 *   silently for one that tested both.
 * - Makes one migrated PGlite database and dumps it to a file: a fresh PGlite runs initdb, which
 *   costs seconds, and the suites open dozens. Every test database starts as a copy of this one
 *   (openDatabase's `pgliteTemplate`). Workers inherit the variable naming it.
 * - Leaves that database's data directory, closed, beside the file: suites copy it into the DATA_DIR
 *   of a spawned `pyre start` or `pyre migrate` whose test is not about a first start, which then
 *   opens an existing database (about 0.5 CPU-s) instead of running initdb (about 5 CPU-s).
 * - Keeps both under node_modules/.cache, named by what they are made from (the migrations, the
 *   database code, the PGlite and knex-pglite versions): a later run with the same ones starts its
 *   suites at once instead of after initdb and the migrations (about 6 CPU-s).
 * - Compiles the sources that spawned fixtures run (src, migrations, tests/helpers, tests/fixtures)
 *   to CommonJS, as jest's own transform does, once per content: a gateway process then starts with
 *   plain `node` instead of tsx's loader (about 1 CPU-s less for each of the suites' processes).
 */
export default async function globalSetup(): Promise<void> {
  if (!process.env.PYRE_TEST_DATABASE_URL) {
    process.stdout.write(
      '\npyre tests: PGlite only; the PostgreSQL half (and the database outage suite) is skipped. To include it: ' +
        'PYRE_TEST_DATABASE_URL=postgres://user@host:5432/db npm test\n',
    );
  }
  const dir = path.join(CACHE, `pglite-${templateKey()}`);
  if (!fs.existsSync(path.join(dir, 'pglite.tar'))) await makeTemplate(dir);
  process.env[TEMPLATE_ENV] = path.join(dir, 'pglite.tar');
  process.env[TEMPLATE_DIR_ENV] = path.join(dir, 'pglite');
  process.env[COMPILED_ENV] = compileForChildren();
}

/** What spawned fixtures run: every .ts under these, compiled to .js in the same layout. */
const CHILD_SOURCES = ['src', 'migrations', 'tests/helpers', 'tests/fixtures'];
/** Files a compiled module finds beside itself (src/providers/replicate/standin/assets). */
const CHILD_ASSETS = ['src/providers/replicate/standin/assets'];

function tsFiles(dir: string): string[] {
  return fs.readdirSync(path.join(ROOT, dir), { withFileTypes: true }).flatMap((e) => {
    const rel = path.join(dir, e.name);
    if (e.isDirectory()) return tsFiles(rel);
    return e.name.endsWith('.ts') && !e.name.endsWith('.d.ts') ? [rel] : [];
  });
}

/**
 * Compiles CHILD_SOURCES into node_modules/.cache/pyre-tests/js-<hash of the sources>/ (kept while
 * the sources are the same) and returns that directory. From there `require('express')` still finds
 * the project's node_modules, and the package root (package.json, public/) is found walking up.
 */
function compileForChildren(): string {
  const files = CHILD_SOURCES.flatMap(tsFiles).sort();
  const hash = createHash('sha256').update(fs.readFileSync(path.join(ROOT, 'package-lock.json')));
  for (const f of files)
    hash
      .update(`${f}\0`)
      .update(fs.readFileSync(path.join(ROOT, f)))
      .update('\0');
  const out = path.join(CACHE, `js-${hash.digest('hex').slice(0, 16)}`);
  if (fs.existsSync(out)) return out;
  fs.mkdirSync(CACHE, { recursive: true });
  const scratch = fs.mkdtempSync(path.join(CACHE, 'compiling-'));
  for (const f of files) {
    const { code } = transformFileSync(path.join(ROOT, f), {
      jsc: { target: 'es2022', parser: { syntax: 'typescript' } },
      module: { type: 'commonjs' },
      swcrc: false,
      configFile: false,
    });
    const target = path.join(scratch, f.replace(/\.ts$/, '.js'));
    fs.mkdirSync(path.dirname(target), { recursive: true });
    fs.writeFileSync(target, code);
  }
  for (const a of CHILD_ASSETS) fs.cpSync(path.join(ROOT, a), path.join(scratch, a), { recursive: true });
  try {
    fs.renameSync(scratch, out);
  } catch (err) {
    fs.rmSync(scratch, { recursive: true, force: true }); // made by another run meanwhile
    if (!fs.existsSync(out)) throw err;
  }
  pruneCache('js-', out);
  return out;
}

/** Removes the cache's other entries of this kind, once no run that started within the hour can use them. */
function pruneCache(prefix: string, keep: string): void {
  for (const name of fs.readdirSync(CACHE)) {
    const p = path.join(CACHE, name);
    if (name.startsWith(prefix) && p !== keep && Date.now() - fs.statSync(p).mtimeMs > 3_600_000) {
      fs.rmSync(p, { recursive: true, force: true });
    }
  }
}

/** What the template is made from, hashed. */
function templateKey(): string {
  const hash = createHash('sha256');
  const migrations = path.join(ROOT, 'migrations');
  const files = [
    ...fs
      .readdirSync(migrations)
      .sort()
      .map((f) => path.join(migrations, f)),
    path.join(ROOT, 'src', 'db', 'index.ts'),
    path.join(ROOT, 'node_modules', '@electric-sql', 'pglite', 'package.json'),
    path.join(ROOT, 'node_modules', 'knex-pglite', 'package.json'),
  ];
  for (const f of files)
    hash
      .update(`${path.relative(ROOT, f)}\0`)
      .update(fs.readFileSync(f))
      .update('\0');
  return hash.digest('hex').slice(0, 16);
}

/** Migrates a new database on disk in a scratch directory, dumps it, and moves both to `dir`. */
async function makeTemplate(dir: string): Promise<void> {
  fs.mkdirSync(CACHE, { recursive: true });
  const scratch = fs.mkdtempSync(path.join(CACHE, 'making-'));
  const pglite = new PGlite(path.join(scratch, 'pglite'));
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
    fs.writeFileSync(path.join(scratch, 'pglite.tar'), Buffer.from(await dump.arrayBuffer()));
  } finally {
    await db.destroy();
    if (!pglite.closed) await pglite.close();
  }
  try {
    fs.renameSync(scratch, dir);
  } catch (err) {
    // Another run made the same template meanwhile: use that one.
    fs.rmSync(scratch, { recursive: true, force: true });
    if (!fs.existsSync(path.join(dir, 'pglite.tar'))) throw err;
  }
  pruneCache('pglite-', dir); // about 80 MB each
}
