/**
 * Long-poll sessions reachable from any node: two servers joined by an in-memory ClusterBus,
 * raw HTTP. The session lives on A; its requests land on B, which forwards them to A. A node
 * that drains hands its sessions to the other.
 */
import { RealtimeServer, type BusMessage, type ClusterBus, type RealtimeLogger } from '../../src/realtime';
import { decodeMessage } from '../../src/realtime/longpoll/messages';
import { roomChannel, startServer, until, type TestServer } from './helpers';

/** Delivers each message asynchronously, in order, JSON-copied as a real bus would. */
class MemoryHub {
  private readonly handlers = new Map<string, (m: BusMessage, from: string) => void>();
  /** Nodes whose messages are dropped both ways (a dead process). */
  readonly down = new Set<string>();
  /** Messages dropped on the way (a lost bus message), by sender and content. */
  drop: ((message: BusMessage, from: string) => boolean) | null = null;
  sent = 0;
  /** Every message sent, as the bus carried it (JSON). */
  readonly log: string[] = [];
  /** Delivers `message` to `to` as if `from` had sent it. */
  deliver(to: string, message: unknown, from: string): void {
    this.handlers.get(to)!(message as BusMessage, from);
  }
  bus(nodeId: string): ClusterBus {
    return {
      nodeId,
      send: (to, message) => {
        this.sent++;
        const text = JSON.stringify(message);
        this.log.push(text);
        const copy = JSON.parse(text) as BusMessage;
        setImmediate(() => {
          if (this.down.has(nodeId) || this.drop?.(copy, nodeId)) return;
          // '*': every other node.
          for (const [id, h] of this.handlers)
            if ((to === '*' ? id !== nodeId : id === to) && !this.down.has(id)) h(copy, nodeId);
        });
      },
      onMessage: (h) => this.handlers.set(nodeId, h),
    };
  }
}

const SECRET = 'a shared long-poll secret for the tests';
let hub: MemoryHub;
let a: TestServer;
let b: TestServer;

interface Line {
  level: string;
  obj: object;
  msg?: string;
}
const lines: Line[] = [];
const at = (level: string) => (obj: object, msg?: string) => {
  lines.push({ level, obj, msg });
};
const logger: RealtimeLogger = { debug: at('debug'), info: at('info'), warn: at('warn'), error: at('error') };
/** connect's calls, by node. */
const connects: { node: string; authToken: string | null; cookie: string | undefined }[] = [];

async function node(id: string, secret = SECRET): Promise<TestServer> {
  return startServer(
    {
      logger,
      longpoll: { windowMs: 300, sessionTimeoutMs: 3000, secret, bus: hub.bus(id), busTimeoutMs: 300 },
      connect: (params, info) => {
        connects.push({ node: id, authToken: info.authToken, cookie: info.headers.cookie });
        return { assigns: { user: 'u1', plan: { tier: 'pro' } }, id: 'user_socket:u1', expiresAt: Date.now() + 60_000 };
      },
    },
    (rt) => rt.channel('room:*', roomChannel),
  );
}

beforeEach(async () => {
  lines.length = 0;
  connects.length = 0;
  hub = new MemoryHub();
  a = await node('node_a');
  b = await node('node_b');
});
afterEach(async () => {
  await a.close();
  await b.close();
});

interface LpBody {
  status: number;
  token?: string;
  messages?: string[];
}
const lp = (s: TestServer) => `${s.httpUrl}/socket/longpoll?vsn=2.0.0`;
async function get(s: TestServer, token?: string): Promise<LpBody> {
  const r = await fetch(lp(s), { headers: token ? { 'x-phoenix-longpoll-token': token } : {} });
  return (await r.json()) as LpBody;
}
async function post(s: TestServer, token: string, frames: unknown[]): Promise<LpBody> {
  const r = await fetch(lp(s), {
    method: 'POST',
    headers: { 'content-type': 'application/x-ndjson', 'x-phoenix-longpoll-token': token },
    body: frames.map((f) => JSON.stringify(f)).join('\n'),
  });
  return (await r.json()) as LpBody;
}
const OK = (response: unknown = {}) => ({ status: 'ok', response });

test('a session opened on A is served by B: POSTs and polls forwarded, answers relayed', async () => {
  const opened = await get(a);
  expect(opened).toEqual({ status: 410, token: expect.stringMatching(/^node_a\./), messages: [] });
  const token = opened.token!;
  expect(a.rt.stats().transports.longpoll!.sessions).toBe(1);

  expect(await post(b, token, [['1', '1', 'room:x', 'phx_join', {}]])).toEqual({ status: 200 });
  const sentBefore = hub.sent;
  expect(await get(b, token)).toEqual({
    status: 200,
    token,
    messages: [JSON.stringify(['1', '1', 'room:x', 'phx_reply', OK()])],
  });
  expect(hub.sent).toBeGreaterThan(sentBefore);
  // A poll held by A through B is completed by a broadcast, and B creates no session of its own.
  const held = get(b, token);
  await new Promise((r) => setTimeout(r, 50));
  a.rt.broadcast('room:x', 'shout', { n: 1 });
  expect(await held).toEqual({
    status: 200,
    token,
    messages: [JSON.stringify([null, null, 'room:x', 'shout', { n: 1 }])],
  });
  expect(b.rt.stats().transports.longpoll!.sessions).toBe(0);
  // Nothing queued: the window passes (held by A) and B answers 204.
  expect(await get(b, token)).toEqual({ status: 204, token, messages: [] });
  // Large bodies travel too (the bus carries them whole).
  const big = 'x'.repeat(20_000);
  expect(await post(b, token, [['1', '2', 'room:x', 'new_msg', { big }]])).toEqual({ status: 200 });
  const reply = await get(a, token);
  expect(reply.messages!.map((m) => JSON.parse(m))).toEqual([['1', '2', 'room:x', 'phx_reply', OK({ echo: { big } })]]);
});

test('the owner gone: a forwarded poll gets a new session (410 + token), a POST gets 410', async () => {
  const token = (await get(a)).token!;
  hub.down.add('node_a');
  const polled = await get(b, token);
  expect(polled).toEqual({ status: 410, token: expect.stringMatching(/^node_b\./), messages: [] });
  expect(await post(b, token, [[null, '1', 'phoenix', 'heartbeat', {}]])).toEqual({ status: 410 });
  // An expired session on a live owner: "gone" at once, the same answers.
  hub.down.clear();
  const t2 = (await get(a)).token!;
  const session = Array.from(a.rt.connections)[1]!;
  session.close(1001, 'test');
  expect(await post(b, t2, [[null, '1', 'phoenix', 'heartbeat', {}]])).toEqual({ status: 410 });
});

test('tokens are signed: a forged or foreign-key token is a new session / 410, never forwarded', async () => {
  const token = (await get(a)).token!;
  const [nodeId, sid] = token.split('.');
  const sentBefore = hub.sent;
  expect(await post(b, `${nodeId}.${sid}.AAAA`, [[null, '1', 'phoenix', 'heartbeat', {}]])).toEqual({ status: 410 });
  expect(hub.sent).toBe(sentBefore);
  const other = await node('node_c', 'another secret, not shared with the others');
  try {
    expect(await post(other, token, [[null, '1', 'phoenix', 'heartbeat', {}]])).toEqual({ status: 410 });
  } finally {
    await other.close();
  }
});

test('a poll whose client leaves while the owner holds it loses no message', async () => {
  const token = (await get(a)).token!;
  expect(await post(b, token, [['1', '1', 'room:y', 'phx_join', {}]])).toEqual({ status: 200 });
  await get(a, token); // the join reply
  const ctl = new AbortController();
  const gone = fetch(lp(b), { headers: { 'x-phoenix-longpoll-token': token }, signal: ctl.signal }).catch(() => null);
  await new Promise((r) => setTimeout(r, 50));
  ctl.abort();
  await gone;
  a.rt.broadcast('room:y', 'after', { n: 2 });
  const next = await get(b, token);
  expect(next.messages!.map((m) => JSON.parse(m))).toEqual([[null, null, 'room:y', 'after', { n: 2 }]]);
});

test('a bus without a secret is refused at construction', () => {
  expect(() => new RealtimeServer({ longpoll: { bus: new MemoryHub().bus('x') } })).toThrow(/secret/);
});

test('a gone session’s token in ?token= is not taken for the credential: 410 + new session, not 403', async () => {
  // connect authenticates as the gateway does: `token` param first, else the auth header.
  const guarded = await startServer(
    {
      longpoll: { windowMs: 300, sessionTimeoutMs: 3000, secret: SECRET, bus: hub.bus('node_c'), busTimeoutMs: 300 },
      connect: (params, info) => {
        const cred = typeof params.token === 'string' && params.token ? params.token : info.authToken;
        return cred === 'user-credential' ? { assigns: {} } : { error: true, status: 403 };
      },
    },
    (rt) => rt.channel('room:*', roomChannel),
  );
  try {
    const url = `${guarded.httpUrl}/socket/longpoll?vsn=2.0.0`;
    const opened = (await (
      await fetch(url, { headers: { 'x-phoenix-authtoken': 'user-credential' } })
    ).json()) as LpBody;
    expect(opened).toEqual({ status: 410, token: expect.stringMatching(/^node_c\./), messages: [] });
    // A session of A, then A is gone; phoenix.js polls with the old session token in the query.
    const stale = (await get(a)).token!;
    hub.down.add('node_a');
    const res = await fetch(`${url}&token=${encodeURIComponent(stale)}`, {
      headers: { 'x-phoenix-authtoken': 'user-credential' },
    });
    expect(await res.json()).toEqual({ status: 410, token: expect.stringMatching(/^node_c\./), messages: [] });
    // Without a credential it is still refused.
    const anon = await fetch(`${url}&token=${encodeURIComponent(stale)}`);
    expect(await anon.json()).toEqual({ status: 403 });
  } finally {
    await guarded.close();
  }
});

// Held poll answered with the new node's token; channels and undelivered messages carried; old token forwarded.
test('a draining node hands its sessions over to a live node', async () => {
  const t1 = (await get(a)).token!;
  const t2 = (await get(a)).token!;
  expect(await post(a, t1, [['1', '1', 'room:x', 'phx_join', {}]])).toEqual({ status: 200 });
  expect(await post(b, t2, [['5', '5', 'room:z', 'phx_join', {}]])).toEqual({ status: 200 });
  expect((await get(a, t1)).messages).toHaveLength(1); // the join replies
  expect((await get(b, t2)).messages).toHaveLength(1);
  // Session 2 has a message it has not polled yet; session 1 has a poll held.
  a.rt.broadcast('room:z', 'queued', { n: 1 });
  const held = get(a, t1);
  await new Promise((r) => setTimeout(r, 50));

  await a.rt.drain();
  const answered = await held;
  expect(answered).toEqual({ status: 204, token: expect.stringMatching(/^node_b\./), messages: [] });
  const [, sid1] = t1.split('.');
  expect(answered.token!.split('.')[1]).toBe(sid1);
  expect(a.rt.stats().transports.longpoll!.sessions).toBe(0);
  expect(b.rt.stats().transports.longpoll!.sessions).toBe(2);
  expect(a.rt.connections.size).toBe(0);

  // B joined the channels again (no second join reply) and delivers what is broadcast now.
  b.rt.broadcast('room:x', 'after', { n: 2 });
  expect(await get(b, answered.token)).toEqual({
    status: 200,
    token: answered.token,
    messages: [JSON.stringify([null, null, 'room:x', 'after', { n: 2 }])],
  });
  // Session 2's undelivered message went with it; its old token still works, on either node.
  const polled = await get(a, t2);
  expect(polled.token).toMatch(/^node_b\./);
  expect(polled.messages!.map((m) => JSON.parse(m))).toEqual([[null, null, 'room:z', 'queued', { n: 1 }]]);
  expect(await post(b, t2, [['5', '6', 'room:z', 'new_msg', { m: 1 }]])).toEqual({ status: 200 });
  expect(await post(a, t2, [['5', '7', 'room:z', 'new_msg', { m: 2 }]])).toEqual({ status: 200 });
  const replies = (await get(b, polled.token)).messages!.map((m) => JSON.parse(m));
  expect(replies).toEqual([
    ['5', '6', 'room:z', 'phx_reply', OK({ echo: { m: 1 } })],
    ['5', '7', 'room:z', 'phx_reply', OK({ echo: { m: 2 } })],
  ]);
});

test('a node that began to stop after it said it was up refuses a session: it goes to the next live node', async () => {
  const c = await node('node_c');
  try {
    const tokens = [(await get(a)).token!, (await get(a)).token!];
    const held = tokens.map((t) => get(a, t));
    await new Promise((r) => setTimeout(r, 50));
    const drained = a.rt.drain({ intervalMs: 0 });
    await new Promise((r) => setTimeout(r, 60)); // B and C said they are up
    // B stops too, and its "leaving" is lost: A learns it only from B's refusal.
    hub.drop = (m, from) => from === 'node_b' && m.t === 'leaving';
    await b.rt.drain({ intervalMs: 0 });
    await drained;
    for (const answered of await Promise.all(held))
      expect(answered).toEqual({ status: 204, token: expect.stringMatching(/^node_c\./), messages: [] });
    expect(c.rt.stats().transports.longpoll!.sessions).toBe(2);
    expect(hub.log.filter((m) => JSON.parse(m).t === 'refused')).toHaveLength(1);
    const line = lines.find((l) => l.msg?.startsWith('realtime: handed '));
    expect(line?.msg).toBe('realtime: handed 2 long-poll session(s) to 1 live node(s)');
    expect(line?.obj).toMatchObject({ sessions: 2, nodes: { node_c: 2 } });
  } finally {
    await c.close();
  }
});

test('a draining node with no other node up ends its sessions (410), as Phoenix does', async () => {
  const token = (await get(a)).token!;
  hub.down.add('node_b');
  await a.rt.drain();
  expect(a.rt.stats().transports.longpoll!.sessions).toBe(0);
  expect(await post(a, token, [[null, '1', 'phoenix', 'heartbeat', {}]])).toEqual({ status: 410 });
});

test('a node that closes answers the polls it forwarded 204 (the session lives on elsewhere), not 410', async () => {
  const token = (await get(a)).token!;
  expect(await post(a, token, [['1', '1', 'room:w', 'phx_join', {}]])).toEqual({ status: 200 });
  await get(a, token); // the join reply
  const held = get(b, token);
  await new Promise((r) => setTimeout(r, 50));
  await b.rt.close();
  expect(await held).toEqual({ status: 204, token, messages: [] });
  // A released the poll it held for B: what comes next waits for the client's next poll.
  a.rt.broadcast('room:w', 'next', { n: 3 });
  expect((await get(a, token)).messages!.map((m) => JSON.parse(m))).toEqual([[null, null, 'room:w', 'next', { n: 3 }]]);
});

test('the bus messages are decoded in one place: malformed ones are logged and dropped, never thrown', async () => {
  expect(decodeMessage({ t: 'poll', rid: 'r1', sid: 's1' })).toEqual({ t: 'poll', rid: 'r1', sid: 's1' });
  const junk: unknown[] = [
    null,
    'poll',
    [],
    { t: 'nonsense', rid: 'r1' },
    { t: 'poll', rid: 5, sid: 's1' },
    { t: 'post', rid: 'r1', sid: 's1', ctype: null }, // no body
    { t: 'res', rid: 'r1', sid: 's1', body: { status: '200' } },
    { t: 'requeue', sid: 's1', messages: [1, 2] },
    { t: 'redirect', rid: 'r1', sid: 's1', node: 'not a node id!' },
    { t: 'adopt', sid: 's1', session: { params: {}, assigns: {}, id: null, expiresAt: null, frames: [{}], queue: [] } },
  ];
  for (const m of junk) expect(decodeMessage(m)).toHaveProperty('problem');
  expect(decodeMessage({ t: 'poll', rid: 5, sid: 's1' })).toEqual({ problem: 'poll: field rid missing or malformed' });

  for (const m of junk) expect(() => hub.deliver('node_a', m, 'node_b')).not.toThrow();
  const dropped = lines.filter((l) => l.msg === 'realtime: malformed long-poll bus message dropped');
  expect(dropped).toHaveLength(junk.length);
  expect(dropped[3]!.obj).toEqual({ from: 'node_b', problem: 'unknown kind "nonsense"' });
  // A still serves its sessions to B.
  const token = (await get(a)).token!;
  expect(await post(b, token, [['1', '1', 'room:x', 'phx_join', {}]])).toEqual({ status: 200 });
  expect((await get(b, token)).messages).toHaveLength(1);
});

test('a handover carries the connection as connect made it, never the request headers or credentials', async () => {
  const credential = 'user-credential-that-must-stay-off-the-bus';
  const cookie = 'session=a-cookie-that-must-stay-off-the-bus';
  const opened = (await (
    await fetch(lp(a), { headers: { 'x-phoenix-authtoken': credential, cookie } })
  ).json()) as LpBody;
  const token = opened.token!;
  expect(connects).toEqual([{ node: 'node_a', authToken: credential, cookie }]);
  expect(await post(a, token, [['1', '1', 'room:x', 'phx_join', { from: 'client' }]])).toEqual({ status: 200 });
  expect((await get(a, token)).messages).toHaveLength(1);
  const held = get(a, token);
  await new Promise((r) => setTimeout(r, 50));
  await a.rt.drain();
  const moved = await held;
  expect(moved.token).toMatch(/^node_b\./);

  const adopt = hub.log.map((m) => JSON.parse(m) as Record<string, unknown>).find((m) => m.t === 'adopt')!;
  expect(adopt.session).toEqual({
    params: { vsn: '2.0.0' },
    assigns: { user: 'u1', plan: { tier: 'pro' } },
    id: 'user_socket:u1',
    expiresAt: expect.any(Number),
    frames: [
      { quiet: true, msg: { joinRef: '1', ref: '1', topic: 'room:x', event: 'phx_join', payload: { from: 'client' } } },
    ],
    queue: [],
  });
  for (const m of hub.log) {
    expect(m).not.toContain(credential);
    expect(m).not.toContain('a-cookie-that-must-stay-off-the-bus');
  }
  // B did not run connect again: it opened the connection from what A sent, with its socket id.
  expect(connects.filter((c) => c.node === 'node_b')).toEqual([]);
  const conn = Array.from(b.rt.connections)[0]!;
  expect(conn.id).toBe('user_socket:u1');
  expect(conn.assigns).toEqual({ user: 'u1', plan: { tier: 'pro' } });
  b.rt.broadcast('room:x', 'after', { n: 1 });
  expect((await get(b, moved.token)).messages!.map((m) => JSON.parse(m))).toEqual([
    [null, null, 'room:x', 'after', { n: 1 }],
  ]);
  // disconnect(id) reaches the moved connection: it kept its socket id.
  b.rt.disconnect('user_socket:u1');
  await until(() => b.rt.connections.size === 0, 2000, 'the moved connection closed');
  expect(b.rt.stats().transports.longpoll!.sessions).toBe(0);
});
