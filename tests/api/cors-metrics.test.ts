import { TokenSigner } from '../../src/auth/tokens';
import { call, startGateway, TEST_SECRET, type TestGateway } from '../helpers/gateway';

const METRICS_TOKEN = 'metrics-token-0123456789';

describe('CORS_ORIGINS and /metrics', () => {
  let t: TestGateway;
  let api: string;
  const alice = new TokenSigner(TEST_SECRET).mint('alice');

  beforeAll(async () => {
    t = await startGateway('pglite', {
      auth: true,
      env: { CORS_ORIGINS: 'https://dash.example.com, //*.apps.example.org', METRICS_TOKEN },
    });
    api = `${t.url}/api`;
  });
  afterAll(async () => {
    await t.close();
  });

  test('a preflight from an allowed origin is answered with what the API takes', async () => {
    const res = await fetch(`${api}/tasks`, {
      method: 'OPTIONS',
      headers: {
        origin: 'https://dash.example.com',
        'access-control-request-method': 'POST',
        'access-control-request-headers': 'authorization, content-type, idempotency-key',
      },
    });
    expect(res.status).toBe(204);
    expect(res.headers.get('access-control-allow-origin')).toBe('https://dash.example.com');
    expect(res.headers.get('access-control-allow-methods')).toContain('POST');
    expect(res.headers.get('access-control-allow-headers')?.toLowerCase()).toContain('idempotency-key');
    expect(res.headers.get('access-control-allow-headers')?.toLowerCase()).toContain('authorization');
    expect(res.headers.get('vary')).toContain('Origin');
  });

  test('the real request gets Allow-Origin and may read Location', async () => {
    const res = await call(`${api}/tasks`, {
      body: { input_data: { prompt: 'from another origin' } },
      token: alice,
      headers: { origin: 'https://x.apps.example.org' },
    });
    expect(res.status).toBe(202);
    expect(res.headers.get('access-control-allow-origin')).toBe('https://x.apps.example.org');
    expect(res.headers.get('access-control-expose-headers')).toContain('Location');
  });

  test('another origin gets no CORS headers, and its preflight is refused', async () => {
    const res = await call(`${api}/models`, { headers: { origin: 'https://evil.example.net' } });
    expect(res.status).toBe(200);
    expect(res.headers.get('access-control-allow-origin')).toBeNull();
    const pre = await fetch(`${api}/tasks`, {
      method: 'OPTIONS',
      headers: { origin: 'https://evil.example.net', 'access-control-request-method': 'POST' },
    });
    expect(pre.status).toBe(403);
    expect(pre.headers.get('access-control-allow-origin')).toBeNull();
  });

  test('/metrics needs METRICS_TOKEN when it is set', async () => {
    expect((await fetch(`${t.url}/metrics`)).status).toBe(401);
    const wrong = await fetch(`${t.url}/metrics`, { headers: { authorization: 'Bearer nope' } });
    expect(wrong.status).toBe(401);
    const ok = await fetch(`${t.url}/metrics`, { headers: { authorization: `Bearer ${METRICS_TOKEN}` } });
    expect(ok.status).toBe(200);
  });

  test('/metrics counts and times HTTP requests by route and status', async () => {
    const created = await call(`${api}/tasks`, { body: { input_data: { prompt: 'counted' } }, token: alice });
    await call(`${api}/tasks/${created.body.task_id}`, { token: alice });
    await call(`${api}/tasks/00000000-0000-4000-8000-000000000000`, { token: alice });
    await call(`${api}/nope`, { token: alice });
    const text = await (
      await fetch(`${t.url}/metrics`, { headers: { authorization: `Bearer ${METRICS_TOKEN}` } })
    ).text();
    const value = (line: string) =>
      Number(new RegExp(`^${line.replace(/[{}.*+?^$()|[\]\\]/g, '\\$&')} (\\S+)$`, 'm').exec(text)?.[1]);
    expect(value('pyre_http_requests_total{method="GET",route="/api/tasks/:id",status="200"}')).toBeGreaterThanOrEqual(
      1,
    );
    expect(value('pyre_http_requests_total{method="GET",route="/api/tasks/:id",status="404"}')).toBeGreaterThanOrEqual(
      1,
    );
    expect(value('pyre_http_requests_total{method="POST",route="/api/tasks",status="202"}')).toBeGreaterThanOrEqual(1);
    expect(value('pyre_http_requests_total{method="GET",route="unmatched /api",status="404"}')).toBe(1);
    expect(
      value('pyre_http_request_duration_seconds_count{method="GET",route="/api/tasks/:id",status="200"}'),
    ).toBeGreaterThanOrEqual(1);
    expect(text).not.toMatch(/route="\/api\/tasks\/[0-9a-f]{8}-/); // no label per task id
  });
});
