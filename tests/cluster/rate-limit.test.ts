import { randomUUID } from 'node:crypto';
import { TokenSigner } from '../../src/auth/tokens';
import type { Standin } from '../../src/providers/replicate/standin';
import { BACKENDS, freshDb, TEST_PG_URL, type TestDb } from '../helpers/db';
import { call, startGateway, TEST_SECRET, type TestGateway } from '../helpers/gateway';
import { spawnGateway, type GatewayProcess } from '../helpers/gateway-process';
import { fastStandin, joinRecording, phoenixSocket, push } from '../channels/helpers';

const signer = new TokenSigner(TEST_SECRET);
const alice = signer.mint('alice');
const bob = signer.mint('bob');

/** Create one task of `token`'s user on `base`: over REST, or with image_generate on a fresh topic. */
async function create(base: string, token: string, path: 'rest' | 'channel') {
  if (path === 'rest') {
    const res = await call(`${base}/api/tasks`, { token, body: { input_data: { type: 'image', prompt: 'limit' } } });
    return { ok: res.status === 202, status: res.status, retryAfter: res.headers.get('retry-after'), body: res.body };
  }
  const socket = phoenixSocket(base, token);
  try {
    const { channel, joined } = joinRecording(socket, `task:${randomUUID()}`);
    await joined;
    const r = await push(channel, 'image_generate', { prompt: 'limit' });
    return { ok: r.status === 'ok', status: r.status, retryAfter: null, body: r.response };
  } finally {
    socket.disconnect();
  }
}

describe.each(BACKENDS)('task-creation limit on %s', (backend) => {
  it('is per user across REST and channel creates: 429 with Retry-After, an error reply on the channel', async () => {
    // 6 a minute: bursts of 10.
    const t: TestGateway = await startGateway(backend, {
      auth: true,
      env: { RATE_LIMIT_TASKS_PER_MINUTE: '6', RUNNER_ENABLED: 'false' },
    });
    try {
      for (let i = 0; i < 10; i++) expect((await create(t.url, alice, i % 2 ? 'rest' : 'channel')).ok).toBe(true);
      const rest = await create(t.url, alice, 'rest');
      expect(rest.status).toBe(429);
      expect(Number(rest.retryAfter)).toBeGreaterThanOrEqual(1);
      const channel = await create(t.url, alice, 'channel');
      expect(channel.status).toBe('error');
      expect(channel.body.reason).toMatch(/rate limited: at most 6 task submissions a minute/);
      expect(channel.body.retry_after).toBeGreaterThanOrEqual(1);
      expect((await create(t.url, bob, 'channel')).ok).toBe(true);
      expect(Number((await t.gw.db('tasks').where({ user_id: 'alice' }).count({ n: '*' }))[0]!.n)).toBe(10);
    } finally {
      await t.close();
    }
  }, 60_000);
});

(TEST_PG_URL ? describe : describe.skip)('task-creation limit over two processes on one PostgreSQL', () => {
  let standin: Standin;
  let tdb: TestDb;
  const procs: GatewayProcess[] = [];

  beforeAll(async () => {
    standin = await fastStandin();
    tdb = await freshDb('postgres');
    for (let i = 0; i < 2; i++)
      procs.push(
        await spawnGateway({
          PYRE_FIXTURE_PG_URL: TEST_PG_URL!,
          PYRE_FIXTURE_PG_SCHEMA: tdb.schema!,
          AUTH_SECRET: TEST_SECRET,
          REPLICATE_API_TOKEN: standin.token,
          REPLICATE_BASE_URL: standin.url,
          RUNNER_ENABLED: 'false',
          RATE_LIMIT_TASKS_PER_MINUTE: '6',
          LOG_LEVEL: 'warn',
        }),
      );
  }, 120_000);
  afterAll(async () => {
    for (const p of procs) await p.stop();
    await tdb?.drop();
    await standin?.close();
  });

  it('one bucket per user whichever process and path: the 11th create is refused on both', async () => {
    const made: boolean[] = [];
    for (let i = 0; i < 10; i++) made.push((await create(procs[i % 2]!.url, alice, i < 5 ? 'rest' : 'channel')).ok);
    expect(made.every(Boolean)).toBe(true);
    const [a, b] = await Promise.all([create(procs[0]!.url, alice, 'rest'), create(procs[1]!.url, alice, 'channel')]);
    expect(a.status).toBe(429);
    expect(Number(a.retryAfter)).toBeGreaterThanOrEqual(1);
    expect(b.status).toBe('error');
    expect(b.body.reason).toMatch(/rate limited/);
    expect((await create(procs[1]!.url, bob, 'rest')).ok).toBe(true);
    expect(Number((await tdb.db('tasks').where({ user_id: 'alice' }).count({ n: '*' }))[0]!.n)).toBe(10);
  }, 60_000);
});
