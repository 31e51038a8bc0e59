/**
 * Long-poll transport conformance (phoenix-protocol.md §D, §G 42-49), raw HTTP.
 */
import express from 'express';
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import { RealtimeServer, type Channel } from '../../src/realtime';
import { roomChannel, sleep, startServer, until, type TestServer } from './helpers';

let srv: TestServer;
const terminated: string[] = [];
const slowChannel: Channel = {
  join: () => new Promise((r) => setTimeout(() => r({ status: 'ok' }), 600)),
  terminate: (reason, s) => {
    terminated.push(`${s.topic}:${reason}`);
  },
};

beforeAll(async () => {
  srv = await startServer(
    {
      checkOrigin: ['//example.com'],
      longpoll: { windowMs: 300, sessionTimeoutMs: 400 },
      connect: (params) => (params.reject ? { error: true } : { assigns: {} }),
    },
    (rt) => {
      rt.channel('stuck:*', slowChannel);
      rt.channel('room:*', {
        ...roomChannel,
        terminate: (reason, s) => {
          terminated.push(`${s.topic}:${reason}`);
        },
      });
    },
  );
});
afterAll(() => srv.close());

const lpUrl = (q = '') => `${srv.httpUrl}/socket/longpoll?vsn=2.0.0${q}`;
interface LpBody {
  status: number;
  token?: string;
  messages?: string[];
}

async function get(url: string, headers: Record<string, string> = {}): Promise<LpBody> {
  const r = await fetch(url, { headers: { accept: 'application/json', ...headers } });
  expect(r.status).toBe(200);
  return (await r.json()) as LpBody;
}

async function post(
  token: string,
  lines: string[],
  ctype = 'application/x-ndjson',
  via: 'header' | 'query' = 'header',
): Promise<LpBody> {
  const url = via === 'query' ? lpUrl(`&token=${encodeURIComponent(token)}`) : lpUrl();
  const headers: Record<string, string> = { 'content-type': ctype };
  if (via === 'header') headers['x-phoenix-longpoll-token'] = token;
  const r = await fetch(url, { method: 'POST', headers, body: lines.join('\n') });
  return (await r.json()) as LpBody;
}

async function open(q = ''): Promise<string> {
  const b = await get(lpUrl(q));
  expect(b).toEqual({ status: 410, token: expect.any(String), messages: [] });
  return b.token!;
}

/** Polls until `n` messages arrived (several polls may be needed). */
async function pollMessages(token: string, n: number): Promise<unknown[]> {
  const out: unknown[] = [];
  while (out.length < n) {
    const b = await get(lpUrl(), { 'x-phoenix-longpoll-token': token });
    expect([200, 204]).toContain(b.status);
    expect(b.token).toBe(token);
    for (const m of b.messages ?? []) {
      expect(typeof m).toBe('string');
      out.push(JSON.parse(m));
    }
  }
  return out;
}

const OK = (response: unknown = {}) => ({ status: 'ok', response });

test('G42 open: 410 with a token, JSON headers', async () => {
  const r = await fetch(lpUrl(), { headers: { accept: 'application/json' } });
  expect(r.status).toBe(200);
  expect(r.headers.get('content-type')).toBe('application/json; charset=utf-8');
  expect(r.headers.get('cache-control')).toBe('no-store');
  expect(r.headers.get('access-control-allow-origin')).toBe('*');
  const body = (await r.json()) as LpBody;
  expect(body).toEqual({ status: 410, token: expect.any(String), messages: [] });
  expect(body.token!.length).toBeGreaterThanOrEqual(24);
});

test('G43 join over long-poll (token in header or query); replies come with the next poll as strings', async () => {
  const token = await open();
  expect(await post(token, [JSON.stringify(['1', '1', 'room:lobby', 'phx_join', {}])])).toEqual({ status: 200 });
  expect(await pollMessages(token, 1)).toEqual([['1', '1', 'room:lobby', 'phx_reply', OK()]]);
  expect(
    await post(token, [JSON.stringify(['1', '2', 'room:lobby', 'new_msg', { a: 1 }])], 'application/x-ndjson', 'query'),
  ).toEqual({ status: 200 });
  const b = await get(lpUrl(`&token=${encodeURIComponent(token)}`));
  expect(b.status).toBe(200);
  expect(b.messages!.map((m) => JSON.parse(m))).toEqual([
    ['1', '2', 'room:lobby', 'phx_reply', OK({ echo: { a: 1 } })],
  ]);
});

test('G44 empty poll is held for window_ms then answers 204', async () => {
  const token = await open();
  const t0 = Date.now();
  const b = await get(lpUrl(), { 'x-phoenix-longpoll-token': token });
  expect(b).toEqual({ status: 204, token, messages: [] });
  expect(Date.now() - t0).toBeGreaterThanOrEqual(250);
});

test('a held poll is completed as soon as a frame arrives (broadcast)', async () => {
  const token = await open();
  await post(token, [JSON.stringify(['1', '1', 'room:held', 'phx_join', {}])]);
  await pollMessages(token, 1);
  const pending = get(lpUrl(), { 'x-phoenix-longpoll-token': token });
  await sleep(50);
  srv.rt.broadcast('room:held', 'news', { n: 1 });
  const b = await pending;
  expect(b.status).toBe(200);
  expect(b.messages!.map((m) => JSON.parse(m))).toEqual([[null, null, 'room:held', 'news', { n: 1 }]]);
});

test('G45 ndjson batch processed in order with one 200; a non-[ line is a base64 binary push', async () => {
  const token = await open();
  const bin = Buffer.concat([Buffer.from([0, 1, 1, 8, 11]), Buffer.from('13room:batupload_json'), Buffer.from([5, 6])]);
  const lines = [
    JSON.stringify(['1', '1', 'room:bat', 'phx_join', {}]),
    JSON.stringify(['1', '2', 'room:bat', 'new_msg', { n: 2 }]),
    bin.toString('base64'),
  ];
  expect(await post(token, lines)).toEqual({ status: 200 });
  const msgs = await pollMessages(token, 3);
  expect(msgs).toEqual([
    ['1', '1', 'room:bat', 'phx_reply', OK()],
    ['1', '2', 'room:bat', 'phx_reply', OK({ echo: { n: 2 } })],
    ['1', '3', 'room:bat', 'phx_reply', OK({ binary: true, hex: '0506' })],
  ]);
});

test('V1 body without ndjson content type is one text frame', async () => {
  const token = await get(`${srv.httpUrl}/socket/longpoll`).then((b) => b.token!);
  const r = await post(
    token,
    [JSON.stringify({ topic: 'phoenix', event: 'heartbeat', payload: {}, ref: '1' })],
    'application/json',
  );
  expect(r).toEqual({ status: 200 });
  const b = await get(`${srv.httpUrl}/socket/longpoll?token=${encodeURIComponent(token)}`);
  expect(b.messages!.map((m) => JSON.parse(m))).toEqual([
    { topic: 'phoenix', event: 'phx_reply', payload: OK(), ref: '1' },
  ]);
});

test('G46 bad token: POST 410, GET fresh 410 with a new token', async () => {
  expect(await post('nope', ['[]'])).toEqual({ status: 410 });
  const b = await get(lpUrl(), { 'x-phoenix-longpoll-token': 'nope' });
  expect(b).toEqual({ status: 410, token: expect.any(String), messages: [] });
  expect(b.token).not.toBe('nope');
});

test('G47 a join still running after window_ms ⇒ POST 408', async () => {
  const token = await open();
  expect(await post(token, [JSON.stringify(['1', '1', 'stuck:x', 'phx_join', {}])])).toEqual({ status: 408 });
  // the join completes later and its reply is delivered
  expect(await pollMessages(token, 1)).toEqual([['1', '1', 'stuck:x', 'phx_reply', OK()]]);
});

test('G48 rejected connect or bad origin ⇒ {"status":403}; OPTIONS ⇒ CORS', async () => {
  expect(await get(lpUrl('&reject=1'))).toEqual({ status: 403 });
  expect(await get(lpUrl(), { origin: 'http://evil.com' })).toEqual({ status: 403 });
  expect((await get(lpUrl(), { origin: 'https://example.com' })).status).toBe(410);
  const r = await fetch(lpUrl(), {
    method: 'OPTIONS',
    headers: { 'access-control-request-headers': 'x-phoenix-longpoll-token, content-type' },
  });
  expect(r.status).toBe(200);
  expect(r.headers.get('access-control-allow-origin')).toBe('*');
  expect(r.headers.get('access-control-allow-headers')).toBe('x-phoenix-longpoll-token, content-type');
  expect(r.headers.get('access-control-allow-methods')).toBe('get, post, options');
  expect(r.headers.get('access-control-max-age')).toBe('3600');
  const put = await fetch(lpUrl(), { method: 'PUT' });
  expect(put.status).toBe(400);
});

test('G49 session expiry: channels terminate, next poll gets a fresh 410', async () => {
  terminated.length = 0;
  const token = await open();
  await post(token, [JSON.stringify(['1', '1', 'room:expire', 'phx_join', {}])]);
  await pollMessages(token, 1);
  await until(() => terminated.includes('room:expire:closed'), 3000, 'session expiry');
  const b = await get(lpUrl(), { 'x-phoenix-longpoll-token': token });
  expect(b.status).toBe(410);
  expect(b.token).not.toBe(token);
});

test('forced disconnect ends a long-poll session; its held poll answers 410', async () => {
  const s = await startServer({ longpoll: { windowMs: 2000 }, connect: () => ({ id: 'user:9' }) });
  try {
    const token = ((await (await fetch(`${s.httpUrl}/socket/longpoll?vsn=2.0.0`)).json()) as LpBody).token!;
    const pending = fetch(`${s.httpUrl}/socket/longpoll?vsn=2.0.0`, {
      headers: { 'x-phoenix-longpoll-token': token },
    }).then((r) => r.json());
    await sleep(50);
    s.rt.disconnect('user:9');
    expect(await pending).toEqual({ status: 410 });
    expect(s.rt.stats().transports.longpoll!.sessions).toBe(0);
  } finally {
    await s.close();
  }
});

test('mounts on Express via middleware() next to other routes', async () => {
  const rt = new RealtimeServer({ checkOrigin: false });
  const app = express();
  app.use('/socket', rt.middleware()); // a mount path rewrites req.url; originalUrl keeps the full path
  app.get('/health', (_req, res) => {
    res.json({ ok: true });
  });
  const server = http.createServer(app);
  rt.attach(server);
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  const base = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
  try {
    expect(await (await fetch(`${base}/health`)).json()).toEqual({ ok: true });
    expect(await (await fetch(`${base}/socket/longpoll?vsn=2.0.0`)).json()).toMatchObject({ status: 410 });
  } finally {
    await rt.close();
    server.closeAllConnections();
    await new Promise<void>((r) => server.close(() => r()));
  }
});
