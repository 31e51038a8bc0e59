import type { RecordedRequest } from '../../src/providers/replicate/standin';
import { BACKENDS, TEST_PG_URL } from '../helpers/db';
import type { GatewayProcess } from '../helpers/gateway-process';
import {
  call,
  createTask,
  EVERY_MODEL,
  getTask,
  startRunnerEnv,
  TERMINAL,
  useProcessesOnPostgres,
  waitFor,
  type RunnerEnv,
} from './helpers';

/**
 * Issue 15: the runner at provider scale. A prediction in flight is a timer, not a slot in a small
 * pool; the caps hold over all processes; the claim is fair by user; the provider is paced and a
 * 429 slows the whole client without failing a task.
 */

/** Many tasks from one user at once: the per-user creation limit is not under test here. */
const NO_CREATION_LIMIT = { RATE_LIMIT_TASKS_PER_MINUTE: '0' };

const predictionIdOf = async (env: RunnerEnv, id: string) => (await env.gw.tasks.find(id))?.prediction_id ?? null;

describe.each(BACKENDS)('the runner at scale on %s', (backend) => {
  it('with the defaults, 50 video tasks submitted at once all get a prediction while none has finished', async () => {
    const env = await startRunnerEnv({ backend, env: NO_CREATION_LIMIT });
    try {
      const ids = await Promise.all(
        Array.from({ length: 50 }, (_, i) => createTask(env.url, { type: 'video', prompt: `video #${i}` })),
      );
      await waitFor('50 predictions', async () => env.standin.creates().length >= 50 || null, 30_000);
      await waitFor('50 tasks processing', async () => {
        const rows = await Promise.all(ids.map((id) => env.gw.tasks.find(id)));
        return rows.every((r) => r?.status === 'processing' && r.prediction_id) || null;
      });
      // The stand-in's clock has not moved: every prediction is still starting, so no task
      // waited for another to finish before its prediction was made.
      const predictions = await Promise.all(ids.map((id) => predictionIdOf(env, id)));
      expect(new Set(predictions).size).toBe(50);
      for (const p of predictions) expect(env.standin.prediction(p!)?.status).toBe('starting');
      expect(env.standin.creates()).toHaveLength(50);
      // Within the create budget's burst: none was refused.
      expect(env.standin.creates().filter((r) => r.status !== 201)).toEqual([]);
      expect(env.gw.runner.activeCount).toBe(50);
    } finally {
      await env.gw.runner.stop(0);
      await env.close();
    }
  });

  it("fair by user: bob's single task starts in the first claim after room frees, while ann has hundreds queued", async () => {
    // Room for 10 in this process, so that ann's backlog queues.
    const env = await startRunnerEnv({ backend, env: { ...NO_CREATION_LIMIT, RUNNER_CONCURRENCY: '10' } });
    try {
      const ann: string[] = [];
      for (let i = 0; i < 300; i++)
        ann.push((await env.gw.tasks.create('ann', { type: 'image', prompt: `ann #${i}` })).id);
      await waitFor('ann fills the room', async () => env.standin.creates().length >= 10 || null);
      const bob = (await env.gw.tasks.create('bob', { type: 'image', prompt: 'bob #0' })).id;
      expect(env.standin.creates()).toHaveLength(10);
      expect(await predictionIdOf(env, bob)).toBeNull();
      // Ann's first ten finish; bob's turn (nothing in flight) comes before her eleventh.
      let prediction: string | null = null;
      await waitFor('bob started', async () => {
        await env.standin.advance(500);
        prediction = await predictionIdOf(env, bob);
        return prediction;
      });
      const order = env.standin.creates().map((r) => r.predictionId);
      expect(order.indexOf(prediction!)).toBeGreaterThanOrEqual(10);
      expect(order.indexOf(prediction!)).toBeLessThan(20);
      const annQueued = (await Promise.all(ann.map((id) => env.gw.tasks.find(id)))).filter((r) => !r?.prediction_id);
      expect(annQueued.length).toBeGreaterThanOrEqual(270);
    } finally {
      await env.gw.runner.stop(0);
      await env.close();
    }
  });
});

/** Requests in the provider's API budgets (file downloads and streams are not). */
const isApiRequest = (r: RecordedRequest) => r.op !== 'file' && r.op !== 'stream';

/** What a request is about: a create's prompt, or the prediction a read names. */
const subject = (r: RecordedRequest) =>
  r.op === 'create' ? `create ${(r.body as { input: { prompt: string } }).input.prompt}` : r.path;

describe('provider 429 bursts', () => {
  it('no task fails; after each 429 the whole client waits what it was told (Retry-After, or the ~Ns hint)', async () => {
    const env = await startRunnerEnv({ env: NO_CREATION_LIMIT });
    const RETRY_AFTER_S = 2;
    try {
      // A burst on creates, answered with a Retry-After header.
      env.standin.faults.inject({
        op: 'create',
        times: 4,
        action: { kind: 'status', status: 429, retryAfter: RETRY_AFTER_S },
      });
      const ids = await Promise.all(
        Array.from({ length: 12 }, (_, i) => createTask(env.url, { type: 'image', prompt: `throttled #${i}` })),
      );
      await waitFor(
        '12 predictions',
        async () => env.standin.creates().filter((r) => r.status === 201).length >= 12 || null,
      );
      // A burst on polls, with only Replicate's hint in the detail.
      env.standin.faults.inject({
        op: 'get',
        times: 4,
        action: {
          kind: 'status',
          status: 429,
          retryAfter: 'omit',
          detail: `Request was throttled. Your rate limit resets in ~${RETRY_AFTER_S}s.`,
        },
      });
      await waitFor(
        'every task ended',
        async () => {
          await env.standin.advance(500);
          const tasks = await Promise.all(ids.map((id) => getTask(env.url, id)));
          return tasks.every((t) => TERMINAL.has(t.status)) ? tasks : null;
        },
        60_000,
      );
      const tasks = await Promise.all(ids.map((id) => getTask(env.url, id)));
      expect(tasks.map((t) => t.status)).toEqual(ids.map(() => 'succeeded'));

      const log = env.standin.requests.filter(isApiRequest);
      const throttled = log.filter((r) => r.status === 429);
      expect(throttled.map((r) => r.op)).toEqual(['create', 'create', 'create', 'create', 'get', 'get', 'get', 'get']);
      expect(env.gw.provider.pace?.stats.throttled).toBe(8);
      // Each task's next request after its 429 (its create again, or its next poll) came no
      // sooner than it was told: a run's requests go one at a time, so this holds however slow
      // the machine is.
      for (const t of throttled) {
        const next = log.find((r) => r.seq > t.seq && subject(r) === subject(t))!;
        expect({ after: t.seq, waitedMs: next.wallAt - t.wallAt >= RETRY_AFTER_S * 1000 }).toEqual({
          after: t.seq,
          waitedMs: true,
        });
      }
      // The whole client waited, not only the throttled calls: in the wait after the first 429 of
      // each burst, at most the requests already on their way (one per task, and a few more that
      // were leaving as the 429 came). Unpaused, 12 tasks polling every 50-200 ms send over a
      // hundred in that time.
      for (const first of [throttled[0]!, throttled[4]!]) {
        const during = log.filter((r) => r.wallAt > first.wallAt && r.wallAt < first.wallAt + RETRY_AFTER_S * 1000);
        expect(during.length).toBeLessThanOrEqual(2 * ids.length);
      }
    } finally {
      await env.close();
    }
  }, 90_000);
});

const pgSuite = TEST_PG_URL ? describe : describe.skip;

pgSuite('a global cap over two gateway processes (needs PYRE_TEST_DATABASE_URL)', () => {
  const CAP = 5;
  const N = 40;
  const fx = useProcessesOnPostgres(600);

  // Each process alone has room for 4, so the cap of 5 is only ever reached by the two together:
  // without the claim counting over both, they would run 8 at once.
  it(`with RUNNER_GLOBAL_CONCURRENCY=${CAP} and room for 4 each, never more than ${CAP} predictions in flight together`, async () => {
    const [a, b] = await fx.spawnTwo(
      { RUNNER_CONCURRENCY: '4', RUNNER_GLOBAL_CONCURRENCY: String(CAP), ...NO_CREATION_LIMIT },
      { leaseMs: 2000, pollIntervalMs: 100, claimIntervalMs: 100 },
    );
    for (let i = 0; i < N; i++) {
      const m = EVERY_MODEL[i % EVERY_MODEL.length]!;
      const res = await call(`${(i % 2 ? b : a).url}/api/tasks`, {
        body: { input_data: { type: m.type, model: m.model, prompt: `capped #${i}` } },
      });
      expect(res.status).toBe(202);
    }
    // Sampled while they run: leased, unfinished tasks in the database.
    const samples: number[] = [];
    await waitFor(
      'all tasks to succeed',
      async () => {
        const [{ n }] = (await fx.tdb
          .db('tasks')
          .whereIn('status', ['queued', 'processing'])
          .andWhere('lease_expires_at', '>=', new Date())
          .count({ n: '*' })) as Array<{ n: string }>;
        samples.push(Number(n));
        const res = await call(`${a.url}/api/tasks?status=succeeded&limit=100`);
        return res.body.data.length === N || null;
      },
      120_000,
      100,
    );
    expect(Math.max(...samples)).toBeLessThanOrEqual(CAP);

    // The stand-in's own account: each prediction from its create to its end, swept in time order
    // (an end before a start at the same instant: the next claim follows the end it waited for).
    const views = [...fx.standin.predictions.keys()].map((id) => fx.standin.prediction(id)!);
    expect(views).toHaveLength(N);
    const marks = views.flatMap((v) => [
      { at: Date.parse(v.created_at as string), d: 1 },
      { at: Date.parse(v.completed_at as string), d: -1 },
    ]);
    marks.sort((x, y) => x.at - y.at || x.d - y.d);
    let inFlight = 0;
    let most = 0;
    for (const m of marks) most = Math.max(most, (inFlight += m.d));
    expect(most).toBeLessThanOrEqual(CAP);
    expect(most).toBeGreaterThan(1);
    const created = (p: GatewayProcess) => p.logs.filter((l) => l.msg === 'prediction created').length;
    expect(created(a)).toBeGreaterThan(0);
    expect(created(b)).toBeGreaterThan(0);
    expect(created(a) + created(b)).toBe(N);
  }, 180_000);
});
