import http from 'node:http';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { TokenSigner } from '../../src/auth/tokens';
import { joinRecording, phoenixSocket } from '../channels/helpers';
import { call, startGateway, TEST_SECRET, type TestGateway } from '../helpers/gateway';

/** REST edges a new user hits first (issue 14). PGlite: none of this depends on the database. */
describe('REST edges', () => {
  let t: TestGateway;
  let api: string;
  const signer = new TokenSigner(TEST_SECRET);
  const alice = signer.mint('alice');

  const dataDir = fs.mkdtempSync(path.join(os.tmpdir(), 'pyre-edges-'));

  beforeAll(async () => {
    t = await startGateway('pglite', { auth: true, env: { DATA_DIR: dataDir } });
    api = `${t.url}/api`;
  });
  afterAll(async () => {
    await t.close();
    fs.rmSync(dataDir, { recursive: true, force: true });
  });

  const post = (input_data: unknown) => call(`${api}/tasks`, { body: { input_data }, token: alice });

  describe('a missing body', () => {
    it.each([
      ['with a JSON content type', { 'content-type': 'application/json' }],
      ['with no content type', {}],
    ])('is a 400 that says the body is missing (%s)', async (_name, headers) => {
      const res = await fetch(`${api}/tasks`, {
        method: 'POST',
        headers: { authorization: `Bearer ${alice}`, ...headers },
      });
      expect(res.status).toBe(400);
      expect(((await res.json()) as any).errors.detail).toBe(
        'the request body is missing: send a JSON object with "input_data"',
      );
    });

    it('is a 400 without a Content-Length either (as `curl -X POST -H content-type:…` sends it)', async () => {
      const u = new URL(`${api}/tasks`);
      const { status, body } = await new Promise<{ status: number; body: string }>((resolve, reject) => {
        const req = http.request(
          {
            host: u.hostname,
            port: u.port,
            path: u.pathname,
            method: 'POST',
            headers: { authorization: `Bearer ${alice}`, 'content-type': 'application/json' },
          },
          (res) => {
            let b = '';
            res.on('data', (d) => (b += d));
            res.on('end', () => resolve({ status: res.statusCode!, body: b }));
          },
        );
        req.on('error', reject);
        req.end();
      });
      expect(status).toBe(400);
      expect(JSON.parse(body).errors.detail).toMatch(/^the request body is missing/);
    });

    it('a body that is not JSON is still a 415', async () => {
      const res = await call(`${api}/tasks`, { raw: 'x=1', token: alice, headers: { 'content-type': 'text/plain' } });
      expect(res.status).toBe(415);
      expect(res.body.errors.detail).toBe('Content-Type must be application/json (got text/plain)');
    });
  });

  describe('validation messages read as English and name the right unit', () => {
    it.each([
      [{ type: 'text', prompt: 'x', images: 'https://example.com/a.png' }, { images: ['must be an array'] }],
      [
        { type: 'text', prompt: 'x', images: Array.from({ length: 11 }, (_, i) => `https://e.com/${i}.png`) },
        { images: ['should have at most 10 items'] },
      ],
      [
        {
          type: 'text',
          prompt: 'x',
          model: 'claude-sonnet-4-20250514',
          images: ['https://e.com/a.png', 'https://e.com/b.png'],
        },
        { images: ['should have at most 1 item'] },
      ],
      [{ type: 'text', prompt: 'x', images: ['ftp://e.com/a'] }, { 'images.0': ['must be an http(s) URL'] }],
      [
        { type: 'text', prompt: 'x', system_prompt: 'y'.repeat(10_001) },
        { system_prompt: ['should have at most 10,000 characters'] },
      ],
      [{ type: 'text', prompt: 'x', system_prompt: 5 }, { system_prompt: ['must be a string'] }],
      [{ type: 'text', prompt: 'x'.repeat(10_001) }, { prompt: ['should have at most 10,000 characters'] }],
      [{ type: 'text', prompt: 'x', temperature: 3 }, { temperature: ['must be at most 2'] }],
      [{ type: 'text', prompt: 'x', temperature: -1 }, { temperature: ['must be at least 0'] }],
      [{ type: 'text', prompt: 'x', temperature: 'hot' }, { temperature: ['must be a number'] }],
      [{ type: 'text', prompt: 'x', max_tokens: 1.5 }, { max_tokens: ['must be an integer'] }],
      [{ type: 'text', prompt: 'x', max_tokens: 100_000 }, { max_tokens: ['must be at most 32,768'] }],
      [{ type: 'video', prompt: 'x', camera_fixed: 'yes' }, { camera_fixed: ['must be true or false'] }],
      [{ type: 'video', prompt: 'x', fps: 30 }, { fps: ['must be 24'] }],
      [
        { type: 'image', prompt: 'x', aspect_ratio: '2:1' },
        { aspect_ratio: ['must be one of: 1:1, 9:16, 16:9, 3:4, 4:3'] },
      ],
      [{ type: 'image', prompt: 'x', model: 'gpt-4.1' }, { model: ['is not supported for image_gen'] }],
      [{ type: 'image', prompt: 'x', colour: 'red' }, { colour: ['is not a parameter of google/imagen-4-fast'] }],
      [{ type: 'sound', prompt: 'x' }, { type: ['must be one of: image, video, text'] }],
    ])('case %# answers its message', async (input, errors) => {
      const res = await post(input);
      expect(res.status).toBe(422);
      expect(res.body.errors).toEqual(errors);
    });
  });

  describe('routes', () => {
    it('an unknown route is named with its /api prefix', async () => {
      const res = await call(`${api}/nope`, { token: alice });
      expect(res.status).toBe(404);
      expect(res.body.errors.detail).toBe('no route for GET /api/nope');
    });

    it.each([
      ['DELETE', '/tasks/00000000-0000-4000-8000-000000000000', 'GET, HEAD'],
      ['PUT', '/tasks', 'GET, HEAD, POST'],
      ['GET', '/tasks/00000000-0000-4000-8000-000000000000/cancel', 'POST'],
      ['POST', '/tasks/00000000-0000-4000-8000-000000000000/events', 'GET, HEAD'],
      ['POST', '/models', 'GET, HEAD'],
    ])('%s /api%s is a 405 with Allow: %s', async (method, path, allow) => {
      const res = await call(`${api}${path}`, { method, token: alice });
      expect(res.status).toBe(405);
      expect(res.headers.get('allow')).toBe(allow);
      expect(res.body.errors.detail).toBe(`${method} is not allowed on /api${path} (allowed: ${allow})`);
    });
  });

  describe('smaller things', () => {
    it('202 names the new task in Location, also when an idempotent request is replayed', async () => {
      const a = await post({ type: 'image', prompt: 'located' });
      expect(a.status).toBe(202);
      expect(a.headers.get('location')).toBe(`/api/tasks/${a.body.task_id}`);
      const followed = await call(new URL(a.headers.get('location')!, t.url).href, { token: alice });
      expect(followed.body.data.id).toBe(a.body.task_id);
      const headers = { 'idempotency-key': 'loc-1' };
      const b1 = await call(`${api}/tasks`, { body: { input_data: { prompt: 'k' } }, token: alice, headers });
      const b2 = await call(`${api}/tasks`, { body: { input_data: { prompt: 'k' } }, token: alice, headers });
      expect(b2.headers.get('idempotent-replayed')).toBe('true');
      expect(b1.headers.get('location')).toBe(`/api/tasks/${b1.body.task_id}`);
      expect(b2.headers.get('location')).toBe(`/api/tasks/${b1.body.task_id}`);
    });

    it('output files are served with X-Content-Type-Options: nosniff', async () => {
      const id = '00000000-0000-4000-8000-0000000000f1';
      fs.mkdirSync(path.join(dataDir, 'outputs', id), { recursive: true });
      fs.writeFileSync(path.join(dataDir, 'outputs', id, '0-abc.png'), Buffer.from('<html>not a png</html>'));
      const res = await fetch(`${t.url}/files/${id}/0-abc.png`);
      expect(res.status).toBe(200);
      expect(res.headers.get('content-type')).toBe('image/png');
      expect(res.headers.get('x-content-type-options')).toBe('nosniff');
    });

    it('a cancel on its way to the provider shows as cancel_requested in the task', async () => {
      const a = await post({ type: 'video', prompt: 'to cancel' });
      await t.gw.db('tasks').where({ id: a.body.task_id }).update({ status: 'processing', prediction_id: 'p-1' });
      const before = await call(`${api}/tasks/${a.body.task_id}`, { token: alice });
      expect(before.body.data.cancel_requested).toBe(false);
      const res = await call(`${api}/tasks/${a.body.task_id}/cancel`, { method: 'POST', token: alice });
      expect(res.status).toBe(200);
      expect(res.body.data).toMatchObject({ status: 'processing', cancel_requested: true });
    });

    it('Seedream refuses a width or height it would ignore (aspect_ratio not "custom")', async () => {
      const m = 'bytedance/seedream-3';
      const bad = await post({ type: 'image', prompt: 'x', model: m, width: 1024 });
      expect(bad.status).toBe(422);
      expect(bad.body.errors).toEqual({ width: ['is only used with aspect_ratio "custom"'] });
      const good = await post({ type: 'image', prompt: 'x', model: m, aspect_ratio: 'custom', width: 1024 });
      expect(good.status).toBe(202);
      const plain = await post({ type: 'image', prompt: 'x', model: m });
      expect(plain.status).toBe(202);
      expect(plain.body.data.input_data.width).toBeUndefined();
    });

    it('each provider_model that /api/models lists is accepted as that model', async () => {
      const models = (await call(`${api}/models`)).body.data as Array<{
        name: string;
        provider_model: string;
        type: string;
      }>;
      for (const m of models) {
        const res = await post({ type: m.type, prompt: 'alias', model: m.provider_model });
        expect([m.provider_model, res.status, res.body.data?.model]).toEqual([m.provider_model, 202, m.name]);
      }
    });

    it('a join with a last_seq beyond the task says so, and live events still arrive', async () => {
      const a = await post({ type: 'video', prompt: 'ahead' });
      const socket = phoenixSocket(t.url, alice);
      try {
        const { events, joined } = joinRecording(socket, `task:${a.body.task_id}`, { last_seq: 100 });
        const reply = await joined;
        expect(reply.notice).toBe("last_seq 100 is beyond the task's last event (1); events after 1 will be sent");
        await t.gw.tasks.cancel('alice', a.body.task_id);
        const deadline = Date.now() + 5000;
        while (!events.some((e) => e.payload.seq === 2) && Date.now() < deadline)
          await new Promise((r) => setTimeout(r, 20));
        expect(events[0]).toMatchObject({ event: 'status', payload: { seq: 2, status: 'canceled' } });
      } finally {
        socket.disconnect();
      }
    });
  });
});
