import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { startStandin, type Standin } from '../../src/providers/replicate/standin';
import { migrate } from '../../src/db';
import { freshDb, TEST_PG_URL, type TestDb } from '../helpers/db';
import { call, createsFor, EVERY_MODEL, events, waitFor } from './helpers';
import { spawnGateway, type GatewayProcess } from '../helpers/gateway-process';

/**
 * Acceptance 5 of issue 4: two gateway processes on one PostgreSQL share 200 tasks; every task
 * runs once (one create each, made by one process) and ends succeeded.
 */
const N = 200;

const suite = TEST_PG_URL ? describe : describe.skip;
// Skipped without PostgreSQL; the run's first line says so (tests/helpers/global-setup.ts).

suite('two gateway processes on one PostgreSQL (needs PYRE_TEST_DATABASE_URL)', () => {
  let standin: Standin;
  let tdb: TestDb;
  let dataDir: string;
  const procs: GatewayProcess[] = [];

  beforeAll(async () => {
    standin = await startStandin({ clock: { speed: 1 } });
    for (const { providerModel: m } of EVERY_MODEL) standin.faults.timelines[m] = { queueMs: 100, processingMs: 500 };
    tdb = await freshDb('postgres');
    dataDir = fs.mkdtempSync(path.join(os.tmpdir(), 'pyre-multi-'));
  });
  afterAll(async () => {
    await Promise.all(procs.map((p) => p.stop()));
    await standin?.close();
    await tdb?.drop();
    fs.rmSync(dataDir, { recursive: true, force: true });
  });

  it(`${N} tasks: each runs once, in one process, and succeeds`, async () => {
    const env = {
      REPLICATE_API_TOKEN: standin.token,
      REPLICATE_BASE_URL: standin.url,
      RUNNER_ENABLED: 'true',
      RUNNER_CONCURRENCY: '24',
      // One user submits all 200 at once; the per-user limit (cluster-wide) is not under test here.
      RATE_LIMIT_TASKS_PER_MINUTE: '0',
      DATA_DIR: dataDir,
      PYRE_FIXTURE_PG_URL: TEST_PG_URL!,
      PYRE_FIXTURE_PG_SCHEMA: tdb.schema!,
      PYRE_FIXTURE_RUNNER: JSON.stringify({
        leaseMs: 2000,
        pollIntervalMs: 100,
        claimIntervalMs: 100,
        retry: { attempts: 5, baseMs: 100, maxMs: 500 },
      }),
    };
    // Migrated here first, so that the two processes can start side by side.
    await migrate(tdb.db);
    const [a, b] = await Promise.all([spawnGateway(env), spawnGateway(env)]);
    procs.push(a, b);
    expect(a.owner).not.toBe(b.owner);
    // A few creates lose their answers after the prediction was made.
    standin.faults.inject({ op: 'create', times: 3, action: { kind: 'create_then_drop' } });
    standin.faults.inject({ op: 'create', times: 3, action: { kind: 'create_then_status', status: 502 } });

    const tasks: Array<{ id: string; prompt: string; type: string }> = [];
    await Promise.all(
      Array.from({ length: 8 }, async (_, lane) => {
        for (let i = lane; i < N; i += 8) {
          const m = EVERY_MODEL[i % EVERY_MODEL.length]!;
          const prompt = `multi #${i} (${m.model})`;
          const res = await call(`${(i % 2 ? b : a).url}/api/tasks`, {
            body: { input_data: { type: m.type, model: m.model, prompt } },
          });
          expect(res.status).toBe(202);
          tasks.push({ id: res.body.task_id, prompt, type: m.type });
        }
      }),
    );
    expect(tasks).toHaveLength(N);

    const done = await waitFor(
      'all tasks to succeed',
      async () => {
        const res = await call(`${a.url}/api/tasks?status=succeeded&limit=200`);
        return res.body.data.length === N ? res.body.data : null;
      },
      150_000,
      250,
    );
    expect(done).toHaveLength(N);

    // One create that made a prediction per task, and none besides.
    for (const t of tasks)
      expect({ prompt: t.prompt, creates: createsFor(standin, t.prompt).length }).toEqual({
        prompt: t.prompt,
        creates: 1,
      });
    expect(standin.creates()).toHaveLength(N);
    const ids = (await tdb.db('tasks').select('prediction_id', 'attempts')) as Array<{
      prediction_id: string;
      attempts: number;
    }>;
    expect(new Set(ids.map((r) => r.prediction_id)).size).toBe(N);
    expect(ids.every((r) => standin.predictions.has(r.prediction_id))).toBe(true);

    // Both processes did work, and no task was started by both.
    // A create whose answer was lost is found again on a later try ("adopted"), not re-created.
    const STARTED = new Set(['prediction created', 'adopted a prediction whose create answer was lost']);
    const createdBy = (p: GatewayProcess) =>
      new Set(p.logs.filter((l) => STARTED.has(l.msg as string)).map((l) => l.task_id as string));
    const [byA, byB] = [createdBy(a), createdBy(b)];
    expect(byA.size).toBeGreaterThan(0);
    expect(byB.size).toBeGreaterThan(0);
    expect([...byA].filter((id) => byB.has(id))).toEqual([]);
    expect(byA.size + byB.size).toBe(N);

    // One final event per task; streamed text joins to the answer.
    for (const t of tasks.slice(0, 30)) {
      const ev = await events(a.url, t.id);
      expect(ev.filter((e) => e.event === `${t.type}_response`)).toHaveLength(1);
      expect(ev.map((e) => e.seq)).toEqual(ev.map((_, i) => i + 1));
    }
  }, 240_000);
});
