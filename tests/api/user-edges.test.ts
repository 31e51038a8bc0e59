import http from 'node:http';
import { TokenSigner } from '../../src/auth/tokens';
import { call, startGateway, TEST_SECRET, type TestGateway } from '../helpers/gateway';

/** REST edges a new user hits first (issue 14). PGlite: none of this depends on the database. */
describe('REST edges', () => {
  let t: TestGateway;
  let api: string;
  const signer = new TokenSigner(TEST_SECRET);
  const alice = signer.mint('alice');

  beforeAll(async () => {
    t = await startGateway('pglite', { auth: true });
    api = `${t.url}/api`;
  });
  afterAll(async () => {
    await t.close();
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
});
