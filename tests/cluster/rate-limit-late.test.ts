import { TokenSigner } from '../../src/auth/tokens';
import { BACKENDS } from '../helpers/db';
import { call, startGateway, TEST_SECRET, type TestGateway } from '../helpers/gateway';

const signer = new TokenSigner(TEST_SECRET);

/**
 * POST /api/tasks takes its token in the task insert's statement (src/http/rate-limit.ts,
 * LateTake): a request refused before the insert must still spend one, and over the limit be
 * answered 429 rather than with its own refusal, as when the limit was checked first.
 */
describe.each(BACKENDS)('task-creation limit taken in the insert on %s', (backend) => {
  let t: TestGateway;
  let rateStatements = 0;
  /** Statements on the buckets that insert no task: takes of their own. */
  let takesAlone = 0;

  beforeAll(async () => {
    // 6 a minute: bursts of 10.
    t = await startGateway(backend, { auth: true, env: { RATE_LIMIT_TASKS_PER_MINUTE: '6', RUNNER_ENABLED: 'false' } });
    t.gw.db.on('query', (q: { sql: string }) => {
      if (!/task_rate_limits/i.test(q.sql)) return;
      rateStatements++;
      if (!/insert into "tasks"/i.test(q.sql)) takesAlone++;
    });
  }, 60_000);
  afterAll(async () => {
    await t?.close();
  });

  const post = (token: string, init: { body?: unknown; raw?: string; headers?: Record<string, string> }) =>
    call(`${t.url}/api/tasks`, { token, ...init });

  it('refused bodies spend a token each, then every request is 429, whatever its body', async () => {
    const carol = signer.mint('carol');
    const refused = [
      post(carol, { body: { input_data: { type: 'image' } } }), // 422: no prompt
      post(carol, { body: { nothing: true } }), // 422: no input_data
      post(carol, { raw: '{"input_data":', headers: { 'content-type': 'application/json' } }), // 400: malformed
      post(carol, { raw: 'x', headers: { 'content-type': 'text/plain' } }), // 415
      post(carol, { body: { input_data: { type: 'image', prompt: 'x' } }, headers: { 'idempotency-key': 'bad key' } }), // 400
    ];
    const statuses = (await Promise.all(refused)).map((r) => r.status);
    expect(statuses).toEqual([422, 422, 400, 415, 400]);
    // Five more valid creates use the rest of the burst of 10.
    for (let i = 0; i < 5; i++) {
      expect((await post(carol, { body: { input_data: { type: 'image', prompt: `p${i}` } } })).status).toBe(202);
    }
    const over = await Promise.all([
      post(carol, { body: { input_data: { type: 'image', prompt: 'over' } } }),
      post(carol, { body: { input_data: { type: 'image' } } }),
      post(carol, { raw: 'x', headers: { 'content-type': 'text/plain' } }),
      post(carol, { body: { input_data: { type: 'image', prompt: 'k' } }, headers: { 'idempotency-key': 'k1' } }),
    ]);
    for (const r of over) {
      expect(r.status).toBe(429);
      expect(Number(r.headers.get('retry-after'))).toBeGreaterThanOrEqual(1);
      expect(r.body.errors.detail).toMatch(/rate limited: at most 6 task submissions a minute/);
    }
    expect(Number((await t.gw.db('tasks').where({ user_id: 'carol' }).count({ n: '*' }))[0]!.n)).toBe(5);
  }, 60_000);

  it('creates that overlap take in their insert: one statement for take and insert', async () => {
    const tokens = ['dave', 'erin'].map((u) => signer.mint(u));
    rateStatements = 0;
    takesAlone = 0;
    const made = await Promise.all(
      Array.from({ length: 16 }, (_, i) =>
        post(tokens[i % 2]!, { body: { input_data: { type: 'image', prompt: `p${i}` } } }),
      ),
    );
    const statuses = made.map((r) => r.status).sort();
    // Each user's burst is 10: all 8 of each pass.
    expect(statuses).toEqual(Array(16).fill(202));
    expect(rateStatements).toBeGreaterThan(0);
    // Every statement that touched a bucket also inserted the tasks: no take of its own.
    expect(takesAlone).toBe(0);
    const buckets = await t.gw.db('task_rate_limits').whereIn('user_id', ['dave', 'erin']).orderBy('user_id');
    expect(buckets.map((b: { tokens: number }) => Math.floor(Number(b.tokens)))).toEqual([2, 2]);
  }, 60_000);
});
