import { Writable } from 'node:stream';
import WebSocket from 'ws';
import { createGateway } from '../../src/app';
import { TokenSigner } from '../../src/auth/tokens';
import { createLogger } from '../../src/log';
import { freshDb } from '../helpers/db';
import { call, startGateway, TEST_SECRET, testConfig } from '../helpers/gateway';
import { fastStandin, waitFor } from '../channels/helpers';

const signer = new TokenSigner(TEST_SECRET);

describe('rate limit on task submissions', () => {
  it('answers 429 with Retry-After past the per-user budget; other users are not affected', async () => {
    const t = await startGateway('pglite', { auth: true, env: { RATE_LIMIT_TASKS_PER_MINUTE: '1' } });
    try {
      const alice = signer.mint('alice');
      const statuses: number[] = [];
      let limited: Awaited<ReturnType<typeof call>> | undefined;
      for (let i = 0; i < 12; i++) {
        const res = await call(`${t.url}/api/tasks`, { token: alice, body: { input_data: { prompt: `p${i}` } } });
        statuses.push(res.status);
        if (res.status === 429) limited = res;
      }
      expect(statuses.slice(0, 10).every((s) => s === 202)).toBe(true);
      expect(limited).toBeDefined();
      expect(Number(limited!.headers.get('retry-after'))).toBeGreaterThanOrEqual(1);
      expect(limited!.body.errors.detail).toMatch(/rate limited/);
      const bob = await call(`${t.url}/api/tasks`, {
        token: signer.mint('bob'),
        body: { input_data: { prompt: 'b' } },
      });
      expect(bob.status).toBe(202);
      expect((await t.gw.db('tasks').where({ user_id: 'alice' })).length).toBe(
        statuses.filter((s) => s === 202).length,
      );
    } finally {
      await t.close();
    }
  });
});

describe('logs', () => {
  it('are JSON lines; task lines carry task_id, request lines a request id; no token, prompt or provider key appears', async () => {
    const lines: string[] = [];
    const sink = new Writable({
      write(chunk, _enc, cb) {
        lines.push(...chunk.toString().split('\n').filter(Boolean));
        cb();
      },
    });
    const standin = await fastStandin();
    const tdb = await freshDb('pglite');
    const gw = await createGateway({
      config: testConfig({
        AUTH_SECRET: TEST_SECRET,
        REPLICATE_API_TOKEN: standin.token,
        REPLICATE_BASE_URL: standin.url,
        RUNNER_ENABLED: 'true',
      }),
      logger: createLogger({ level: 'debug', destination: sink }),
      db: tdb.db,
      runner: { pollIntervalMs: 100 },
    });
    const url = await gw.start();
    const token = signer.mint('carol');
    const prompt = 'PROMPT-MUST-NOT-BE-LOGGED a lighthouse at dusk';
    try {
      const created = await call(`${url}/api/tasks`, {
        token,
        headers: { 'x-request-id': 'req-42' },
        body: { input_data: { type: 'text', prompt } },
      });
      expect(created.status).toBe(202);
      const id = created.body.task_id;
      const ws = new WebSocket(
        `${url.replace('http', 'ws')}/socket/websocket?vsn=2.0.0&token=${encodeURIComponent(token)}`,
      );
      await new Promise((r) => ws.once('open', r));
      ws.send(JSON.stringify(['1', '1', `task:${id}`, 'phx_join', {}]));
      await waitFor(
        'task end',
        async () => (await call(`${url}/api/tasks/${id}`, { token })).body.data.status === 'succeeded',
        30_000,
      );
      ws.close();
      await call(`${url}/api/tasks`, { token: 'pyre1.forged.token' });
      await gw.close();
      const parsed = lines.map((l) => JSON.parse(l));
      const text = lines.join('\n');
      expect(text).not.toContain('PROMPT-MUST-NOT-BE-LOGGED');
      expect(text).not.toContain(token);
      expect(text).not.toContain(token.split('.')[2]!);
      expect(text).not.toContain(standin.token);
      const taskLines = parsed.filter((l) => l.task_id === id);
      expect(taskLines.map((l) => l.msg)).toEqual(expect.arrayContaining(['task created', 'prediction created']));
      const requestLines = parsed.filter((l) => l.msg === 'request');
      expect(requestLines.length).toBeGreaterThan(0);
      for (const l of requestLines) expect(typeof l.request_id).toBe('string');
      expect(requestLines.some((l) => l.request_id === 'req-42')).toBe(true);
      // The full path, never the query (a query may hold a token).
      expect(requestLines.find((l) => l.request_id === 'req-42')?.path).toMatch(/^\/api\/tasks/);
      for (const l of requestLines) expect(String(l.path)).not.toContain('?');
    } finally {
      await tdb.drop();
      await standin.close();
    }
  });
});

describe('access lines', () => {
  it('are rate-limited per client and status class (CLIENT_LOG_LINES_PER_10S); a flood of 401s leaves other lines alone', async () => {
    const lines: Array<Record<string, unknown>> = [];
    const sink = new Writable({
      write(chunk, _enc, cb) {
        for (const l of chunk.toString().split('\n').filter(Boolean)) lines.push(JSON.parse(l));
        cb();
      },
    });
    const tdb = await freshDb('pglite');
    const gw = await createGateway({
      config: testConfig({ AUTH_SECRET: TEST_SECRET, CLIENT_LOG_LINES_PER_10S: '5' }),
      logger: createLogger({ level: 'info', destination: sink }),
      db: tdb.db,
    });
    const url = await gw.listen();
    try {
      const alice = signer.mint('alice');
      const bob = signer.mint('bob');
      for (let i = 0; i < 30; i++)
        expect((await call(`${url}/api/tasks`, { token: 'pyre1.forged.token' })).status).toBe(401);
      for (let i = 0; i < 8; i++) expect((await call(`${url}/api/tasks`, { token: alice })).status).toBe(200);
      for (let i = 0; i < 3; i++) expect((await call(`${url}/api/tasks`, { token: bob })).status).toBe(200);
      for (let i = 0; i < 7; i++) expect((await call(`${url}/api/tasks/nope`, { token: bob })).status).toBe(404);
      const access = lines.filter((l) => l.msg === 'request');
      const count = (status: number) => access.filter((l) => l.status === status).length;
      // 30 refused requests from one address: 5 lines. Alice's 2xx: 5 of 8. Bob's 2xx (3) and 4xx (5 of 7): his own budgets.
      expect(count(401)).toBe(5);
      expect(count(200)).toBe(5 + 3);
      expect(count(404)).toBe(5);
    } finally {
      await gw.close();
      await tdb.drop();
    }
  });
});
