import { TEST_PG_URL } from '../helpers/db';
import type { GatewayProcess } from '../helpers/gateway-process';
import { call, createsFor, EVERY_MODEL, events, useProcessesOnPostgres, waitFor } from './helpers';

/**
 * Acceptance 5 of issue 4: two gateway processes on one PostgreSQL share 200 tasks; every task
 * runs once (one create each, made by one process) and ends succeeded.
 */
const N = 200;

const suite = TEST_PG_URL ? describe : describe.skip;
// Skipped without PostgreSQL; the run's first line says so (tests/helpers/global-setup.ts).

suite('two gateway processes on one PostgreSQL (needs PYRE_TEST_DATABASE_URL)', () => {
  const fx = useProcessesOnPostgres(500);

  it(`${N} tasks: each runs once, in one process, and succeeds`, async () => {
    const [a, b] = await fx.spawnTwo(
      {
        RUNNER_CONCURRENCY: '24',
        // One user submits all 200 at once; the per-user limit (cluster-wide) is not under test here.
        RATE_LIMIT_TASKS_PER_MINUTE: '0',
      },
      { leaseMs: 2000, pollIntervalMs: 100, claimIntervalMs: 100, retry: { attempts: 5, baseMs: 100, maxMs: 500 } },
    );
    expect(a.owner).not.toBe(b.owner);
    // A few creates lose their answers after the prediction was made.
    fx.standin.faults.inject({ op: 'create', times: 3, action: { kind: 'create_then_drop' } });
    fx.standin.faults.inject({ op: 'create', times: 3, action: { kind: 'create_then_status', status: 502 } });

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
      expect({ prompt: t.prompt, creates: createsFor(fx.standin, t.prompt).length }).toEqual({
        prompt: t.prompt,
        creates: 1,
      });
    expect(fx.standin.creates()).toHaveLength(N);
    const ids = (await fx.tdb.db('tasks').select('prediction_id', 'attempts')) as Array<{
      prediction_id: string;
      attempts: number;
    }>;
    expect(new Set(ids.map((r) => r.prediction_id)).size).toBe(N);
    expect(ids.every((r) => fx.standin.predictions.has(r.prediction_id))).toBe(true);

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
