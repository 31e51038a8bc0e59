import { randomBytes } from 'node:crypto';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import knexFactory, { type Knex } from 'knex';
import { migrate, openDatabase, type Db } from '../../src/db';
import { normalizeOutput } from '../../src/providers/progress';
import { startStandin, type Standin } from '../../src/providers/replicate/standin';
import { TEST_PG_URL } from '../helpers/db';
import { spawnGateway, type GatewayProcess } from '../helpers/gateway-process';
import { call, EVERY_MODEL, waitFor } from './helpers';

/**
 * Issue 16, acceptance 5: every backend of the gateway's database is terminated
 * (pg_terminate_backend) every 500 ms for 10 s while 20 text tasks stream. The gateway runs in
 * a child process, so that a crash (an unhandled rejection) shows as an exit; it has a database
 * of its own on the shared PostgreSQL, and only that database's backends are terminated.
 */
const N = 20;
const KILL_EVERY_MS = 500;
const KILL_FOR_MS = 10_000;

const suite = TEST_PG_URL ? describe : describe.skip;

suite('the database drops every connection while text streams (needs PYRE_TEST_DATABASE_URL)', () => {
  let standin: Standin;
  let admin: Knex;
  let db: Db;
  let dbName: string;
  let dataDir: string;
  let gw: GatewayProcess | undefined;

  beforeAll(async () => {
    standin = await startStandin({ clock: { speed: 1 } });
    admin = knexFactory({ client: 'pg', connection: TEST_PG_URL, pool: { min: 0, max: 1 } });
    dbName = `pyre_outage_${randomBytes(5).toString('hex')}`;
    await admin.raw(`CREATE DATABASE ${dbName}`);
    const url = new URL(TEST_PG_URL!);
    url.pathname = `/${dbName}`;
    db = openDatabase({ databaseUrl: url.toString(), pool: { min: 0, max: 2 } });
    await migrate(db);
    dataDir = fs.mkdtempSync(path.join(os.tmpdir(), 'pyre-outage-'));
    gw = await spawnGateway({
      REPLICATE_API_TOKEN: standin.token,
      REPLICATE_BASE_URL: standin.url,
      RUNNER_ENABLED: 'true',
      RUNNER_CONCURRENCY: String(N),
      DATA_DIR: dataDir,
      PYRE_FIXTURE_PG_URL: url.toString(),
      PYRE_FIXTURE_RUNNER: JSON.stringify({
        leaseMs: 2000,
        pollIntervalMs: 200,
        claimIntervalMs: 200,
        retry: { attempts: 3, baseMs: 100, maxMs: 500 },
      }),
    });
  });
  afterAll(async () => {
    // What a process that died said last (an unhandled rejection's stack).
    if (gw && gw.stderr.length) console.info(`gateway stderr:\n${gw.stderr.slice(-40).join('\n')}`);
    await gw?.stop();
    await standin?.close();
    await db?.destroy();
    await admin?.raw(`DROP DATABASE IF EXISTS ${dbName} WITH (FORCE)`);
    await admin?.destroy();
    fs.rmSync(dataDir, { recursive: true, force: true });
  });

  it(`${N} streaming text tasks finish with their full text; the process stays up`, async () => {
    const textModels = EVERY_MODEL.filter((m) => m.type === 'text');
    for (const m of textModels) standin.faults.timelines[m.providerModel] = { queueMs: 200, processingMs: 8000 };
    const ids: string[] = [];
    for (let i = 0; i < N; i++) {
      const m = textModels[i % textModels.length]!;
      const res = await call(`${gw!.url}/api/tasks`, {
        body: { input_data: { type: 'text', model: m.model, prompt: `outage #${i}` } },
      });
      expect(res.status).toBe(202);
      ids.push(res.body.task_id);
    }
    // Streaming has begun for most of them before the connections start to drop.
    await waitFor('text to stream', async () => {
      const rows = await db('task_events').where({ event: 'text_delta' }).countDistinct({ n: 'task_id' });
      return Number(rows[0]!.n) >= N / 2;
    });

    // A process that dies fails the test at once, with its exit code.
    let exitedEarly: number | null | undefined;
    const died = gw!.exited.then((code) => {
      exitedEarly = code;
      throw new Error(`the gateway process exited (${code})`);
    });
    died.catch(() => undefined);
    let terminated = 0;
    const until = Date.now() + KILL_FOR_MS;
    while (Date.now() < until) {
      const res = (await admin.raw(
        `SELECT count(pg_terminate_backend(pid))::int AS n FROM pg_stat_activity WHERE datname = ? AND pid <> pg_backend_pid()`,
        [dbName],
      )) as { rows: Array<{ n: number }> };
      terminated += res.rows[0]!.n;
      await new Promise((r) => setTimeout(r, KILL_EVERY_MS));
    }
    expect(terminated).toBeGreaterThan(0);

    const rows = await Promise.race([
      died,
      waitFor(
        `all ${N} tasks to end`,
        async () => {
          const r = (await db('tasks').whereIn('id', ids)) as Array<Record<string, any>>;
          return r.every((t) => ['succeeded', 'failed', 'canceled'].includes(t.status)) ? r : null;
        },
        120_000,
        250,
      ),
    ]);
    expect(exitedEarly).toBeUndefined();
    expect((await call(`${gw!.url}/healthz`)).status).toBe(200);
    for (const t of rows) {
      const full = normalizeOutput('text', standin.prediction(t.prediction_id)!.output)!.text;
      const deltas = (await db('task_events').where({ task_id: t.id, event: 'text_delta' }).orderBy('seq'))
        .map((e: { payload: { delta: string } }) => e.payload.delta)
        .join('');
      expect({ id: t.id, status: t.status, text: t.output?.text, deltas }).toEqual({
        id: t.id,
        status: 'succeeded',
        text: full,
        deltas: full,
      });
    }
    // Nothing crashed; a lost connection is said once per outage, not at every tick.
    expect(gw!.logs.filter((l) => l.level === 60 || l.msg === 'task run crashed')).toEqual([]);
    const said = (start: string) => gw!.logs.filter((l) => String(l.msg).startsWith(start)).length;
    const paused = said('database unreachable');
    expect(paused).toBeLessThanOrEqual(said('database answers again') + 1);
    expect(paused).toBeLessThan(KILL_FOR_MS / 200);
  }, 240_000);
});
