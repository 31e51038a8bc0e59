/**
 * Issue 17: the wire-level edge cases where pyre used to answer differently from Phoenix 1.8.12,
 * one raw-frame test each, asserting the answer pyre now gives (Phoenix's, or pyre's own where the
 * realtime README's "Behaviour notes" say why), plus numeric refs.
 */
import http from 'node:http';
import { randomBytes } from 'node:crypto';
import { RawClient, roomChannel, startServer, type TestServer } from './helpers';

let srv: TestServer;
const handled: string[] = [];

beforeAll(async () => {
  srv = await startServer({ longpoll: { windowMs: 300, sessionTimeoutMs: 2000 } }, (rt) =>
    rt.channel('room:*', {
      ...roomChannel,
      handleIn(event, payload, socket, ref) {
        handled.push(event);
        return roomChannel.handleIn!(event, payload, socket, ref);
      },
    }),
  );
});
afterAll(() => srv.close());

const v2 = () => `${srv.wsUrl}?vsn=2.0.0`;
const OK = (response: unknown = {}) => ({ status: 'ok', response });

/** Sends a hand-made upgrade request and returns the status line's code (101 or a refusal). */
function rawUpgrade(headers: Record<string, string>): Promise<{ status: number; headers: http.IncomingHttpHeaders }> {
  return new Promise((resolve, reject) => {
    const req = http.request({
      host: '127.0.0.1',
      port: srv.port,
      path: '/socket/websocket?vsn=2.0.0',
      headers: {
        connection: 'Upgrade',
        upgrade: 'websocket',
        'sec-websocket-key': randomBytes(16).toString('base64'),
        ...headers,
      },
    });
    req.on('upgrade', (res, socket) => {
      socket.destroy();
      resolve({ status: res.statusCode ?? 0, headers: res.headers });
    });
    req.on('response', (res) => {
      res.resume();
      resolve({ status: res.statusCode ?? 0, headers: res.headers });
    });
    req.on('error', reject);
    req.end();
  });
}

describe('WebSocket upgrade', () => {
  test('1. Sec-WebSocket-Version 8 ⇒ HTTP 400 (13 upgrades)', async () => {
    expect((await rawUpgrade({ 'sec-websocket-version': '8' })).status).toBe(400);
    expect((await rawUpgrade({ 'sec-websocket-version': '13' })).status).toBe(101);
  });

  test('2. only an unknown subprotocol offered ⇒ HTTP 403; with "phoenix" among them ⇒ 101 echoing phoenix', async () => {
    const base = { 'sec-websocket-version': '13' };
    expect((await rawUpgrade({ ...base, 'sec-websocket-protocol': 'mqtt' })).status).toBe(403);
    const ok = await rawUpgrade({ ...base, 'sec-websocket-protocol': 'mqtt, phoenix' });
    expect(ok.status).toBe(101);
    expect(ok.headers['sec-websocket-protocol']).toBe('phoenix');
    // The auth token alone is not a subprotocol to negotiate: upgraded with none, as in Phoenix.
    const tokenOnly = await rawUpgrade({ ...base, 'sec-websocket-protocol': 'base64url.bearer.phx.YWJj' });
    expect(tokenOnly.status).toBe(101);
    expect(tokenOnly.headers['sec-websocket-protocol']).toBeUndefined();
  });
});

describe('join_ref as the join frame carried it', () => {
  test('3. join with a null join_ref: a frame with join_ref "5" is stale; the close names join_ref null', async () => {
    const c = await RawClient.connect(v2());
    const T = 'room:nulljoin';
    expect(await c.call([null, '5', T, 'phx_join', {}])).toEqual([null, '5', T, 'phx_reply', OK()]);
    handled.length = 0;
    c.send(['5', '7', T, 'ping', {}]);
    // A heartbeat after it: its reply proves the ping was read, and nothing came before it.
    expect(await c.call([null, '8', 'phoenix', 'heartbeat', {}])).toEqual([null, '8', 'phoenix', 'phx_reply', OK()]);
    expect(handled).toEqual([]);
    // null join_ref frames still reach the channel; its replies use the ref as join_ref (Phoenix's socket.join_ref).
    expect(await c.call([null, '9', T, 'new_msg', { a: 1 }])).toEqual([
      '5',
      '9',
      T,
      'phx_reply',
      OK({ echo: { a: 1 } }),
    ]);
    c.send([null, '10', T, 'phx_leave', {}]);
    expect(await c.json()).toEqual(['5', '10', T, 'phx_reply', OK()]);
    expect(await c.json()).toEqual([null, null, T, 'phx_close', {}]);
    await c.close();
  });

  test('4. V1 join without join_ref, joined again: the old channel\'s phx_close has "ref":null', async () => {
    const c = await RawClient.connect(srv.wsUrl);
    const T = 'room:v1dup';
    expect(await c.call({ topic: T, event: 'phx_join', payload: {}, ref: '1' })).toEqual({
      topic: T,
      event: 'phx_reply',
      payload: OK(),
      ref: '1',
    });
    expect(await c.call({ topic: T, event: 'phx_join', payload: {}, ref: '2' })).toEqual({
      topic: T,
      event: 'phx_reply',
      payload: OK(),
      ref: '2',
    });
    expect(await c.json()).toEqual({ topic: T, event: 'phx_close', payload: {}, ref: null });
    // Later V1 frames (no join_ref at all) still reach the new channel.
    expect(await c.call({ topic: T, event: 'new_msg', payload: { b: 2 }, ref: '3' })).toEqual({
      topic: T,
      event: 'phx_reply',
      payload: OK({ echo: { b: 2 } }),
      ref: '3',
    });
    await c.close();
  });
});

describe('binary push with an empty field', () => {
  /** Client binary push: 00 | lengths | join_ref ref topic event | payload. */
  const push = (joinRef: string, ref: string, topic: string, event: string, data: Buffer): Buffer =>
    Buffer.concat([
      Buffer.from([0, joinRef.length, ref.length, topic.length, event.length]),
      Buffer.from(joinRef + ref + topic + event),
      data,
    ]);

  test('5. empty join_ref ⇒ stale, dropped; empty ref ⇒ the reply carries ref ""', async () => {
    const c = await RawClient.connect(v2());
    const T = 'room:bin';
    expect(await c.call(['1', '1', T, 'phx_join', {}])).toEqual(['1', '1', T, 'phx_reply', OK()]);
    handled.length = 0;
    c.sendBinary(push('', '2', T, 'ping', Buffer.from('abc')));
    expect(await c.call([null, '3', 'phoenix', 'heartbeat', {}])).toEqual([null, '3', 'phoenix', 'phx_reply', OK()]);
    expect(handled).toEqual([]);
    c.sendBinary(push('1', '', T, 'upload_json', Buffer.from('abc')));
    expect(await c.json()).toEqual(['1', '', T, 'phx_reply', OK({ binary: true, hex: '616263' })]);
    await c.close();
  });
});

describe('long-poll POST bodies', () => {
  const lpUrl = () => `${srv.httpUrl}/socket/longpoll?vsn=2.0.0`;
  async function open(): Promise<string> {
    const b = (await (await fetch(lpUrl())).json()) as { status: number; token: string };
    expect(b.status).toBe(410);
    return b.token;
  }
  async function post(token: string, body: string): Promise<{ http: number; body: unknown }> {
    const r = await fetch(lpUrl(), {
      method: 'POST',
      headers: { 'content-type': 'application/x-ndjson', 'x-phoenix-longpoll-token': token },
      body,
    });
    return { http: r.status, body: await r.json() };
  }
  async function poll(token: string): Promise<unknown[]> {
    const r = await fetch(lpUrl(), { headers: { 'x-phoenix-longpoll-token': token } });
    const b = (await r.json()) as { status: number; messages?: string[] };
    return (b.messages ?? []).map((m) => JSON.parse(m) as unknown);
  }

  test('6. 101 ndjson lines: the first 100 are handled, the rest ignored, {"status":200}', async () => {
    const token = await open();
    const T = 'room:lp101';
    expect(await post(token, JSON.stringify(['1', '1', T, 'phx_join', {}]))).toEqual({
      http: 200,
      body: { status: 200 },
    });
    const lines = Array.from({ length: 101 }, (_, i) => JSON.stringify(['1', String(i + 2), T, 'new_msg', { i }]));
    expect(await post(token, lines.join('\n'))).toEqual({ http: 200, body: { status: 200 } });
    const got: unknown[] = [];
    // Poll until the 100 replies (and the join reply) arrived; then one more poll must bring nothing.
    while (got.length < 101) got.push(...(await poll(token)));
    expect(got).toHaveLength(101);
    expect(got[0]).toEqual(['1', '1', T, 'phx_reply', OK()]);
    expect(got.slice(1).map((f) => (f as unknown[])[1])).toEqual(Array.from({ length: 100 }, (_, i) => String(i + 2)));
    expect(await poll(token)).toEqual([]);
  });

  test('7. an ndjson body ending in "\\n": the empty last line is ignored, the session lives on', async () => {
    const token = await open();
    const T = 'room:lpnl';
    const body = `${JSON.stringify(['1', '1', T, 'phx_join', {}])}\n${JSON.stringify(['1', '2', T, 'new_msg', { x: 1 }])}\n`;
    expect(await post(token, body)).toEqual({ http: 200, body: { status: 200 } });
    const got: unknown[] = [];
    while (got.length < 2) got.push(...(await poll(token)));
    expect(got).toEqual([
      ['1', '1', T, 'phx_reply', OK()],
      ['1', '2', T, 'phx_reply', OK({ echo: { x: 1 } })],
    ]);
    // Still the same session: a POST on it is accepted.
    expect(await post(token, `${JSON.stringify([null, '3', 'phoenix', 'heartbeat', {}])}\n`)).toEqual({
      http: 200,
      body: { status: 200 },
    });
    expect(await poll(token)).toEqual([[null, '3', 'phoenix', 'phx_reply', OK()]]);
  });
});

test('numeric refs are echoed as the JSON numbers they were', async () => {
  const c = await RawClient.connect(v2());
  const T = 'room:numeric';
  expect(await c.call([1, 1, T, 'phx_join', {}])).toEqual([1, 1, T, 'phx_reply', OK()]);
  expect(await c.call([1, 2, T, 'new_msg', {}])).toEqual([1, 2, T, 'phx_reply', OK({ echo: {} })]);
  expect(await c.call([null, 3, 'phoenix', 'heartbeat', {}])).toEqual([null, 3, 'phoenix', 'phx_reply', OK()]);
  // "1" is not 1: a string join_ref on a topic joined with the number 1 is stale, as in Phoenix.
  handled.length = 0;
  c.send(['1', '4', T, 'new_msg', {}]);
  expect(await c.call([null, 5, 'phoenix', 'heartbeat', {}])).toEqual([null, 5, 'phoenix', 'phx_reply', OK()]);
  expect(handled).toEqual([]);
  await c.close();
});
