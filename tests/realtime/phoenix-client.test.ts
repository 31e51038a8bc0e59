/**
 * The official `phoenix` npm client (phoenix.js 1.8) in Node against the server:
 * WebSocket (via `ws`), long-poll (via fetch), fallback, binary, rejoin, Presence.
 */
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import { Socket, LongPoll, Presence as ClientPresence, type Channel as ClientChannel } from 'phoenix';
import WebSocket from 'ws';
import { RealtimeServer, Presence, type ConnectInfo } from '../../src/realtime';
import { roomChannel, sleep, startServer, until, type TestServer } from './helpers';

let srv: TestServer;
let presence: Presence;
const authTokens: (string | null)[] = [];
const sockets: Socket[] = [];

beforeAll(async () => {
  srv = await startServer(
    {
      longpoll: { windowMs: 500 },
      connect: (params, info: ConnectInfo) => {
        authTokens.push(info.authToken);
        return {
          assigns: { user: params.user ?? 'anon' },
          id: typeof params.user === 'string' ? `user:${params.user}` : null,
        };
      },
    },
    (rt) => {
      presence = new Presence(rt);
      rt.channel('presence:*', {
        join: (_topic, _payload, socket) => {
          presence.track(socket, String(socket.assigns.user), { online_at: String(Date.now()) });
          presence.pushState(socket);
          return { status: 'ok' };
        },
        handleIn: (event, payload, socket) => {
          if (event === 'set_status') {
            presence.update(socket, String(socket.assigns.user), (old) => ({
              ...old,
              status: (payload as { status: string }).status,
            }));
            return { reply: 'ok' };
          }
          return undefined;
        },
      });
      rt.channel('room:*', roomChannel);
    },
  );
});

afterEach(async () => {
  for (const s of sockets.splice(0)) await new Promise<void>((r) => s.disconnect(() => r()));
});
afterAll(() => srv.close());

function socket(opts: Partial<ConstructorParameters<typeof Socket>[1]> = {}, params: object = {}): Socket {
  const s = new Socket(`ws://127.0.0.1:${srv.port}/socket`, {
    transport: WebSocket as never,
    params,
    reconnectAfterMs: () => 20,
    rejoinAfterMs: () => 20,
    ...opts,
  });
  sockets.push(s);
  s.connect();
  return s;
}

function joined(ch: ClientChannel): Promise<unknown> {
  return new Promise((resolve, reject) => {
    ch.join()
      .receive('ok', resolve)
      .receive('error', reject)
      .receive('timeout', () => reject(new Error('join timeout')));
  });
}

function push(
  ch: ClientChannel,
  event: string,
  payload: object,
  timeout?: number,
): Promise<{ status: string; response: unknown }> {
  return new Promise((resolve) => {
    ch.push(event, payload, timeout)
      .receive('ok', (response) => resolve({ status: 'ok', response }))
      .receive('error', (response) => resolve({ status: 'error', response }))
      .receive('timeout', () => resolve({ status: 'timeout', response: null }));
  });
}

function nextEvent(ch: ClientChannel, event: string): Promise<unknown> {
  return new Promise((resolve) => {
    const ref = ch.on(event, (payload) => {
      ch.off(event, ref);
      resolve(payload);
    });
  });
}

test('connect, join with a reply, push with replies, a timeout, an error reply', async () => {
  const s = socket();
  const ch = s.channel('room:lobby', { reply: { hello: 'world' } });
  expect(await joined(ch)).toEqual({ hello: 'world' });
  expect(await push(ch, 'new_msg', { body: 'hi' })).toEqual({ status: 'ok', response: { echo: { body: 'hi' } } });
  expect(await push(ch, 'error_reply', {})).toEqual({ status: 'error', response: { e: 1 } });
  expect(await push(ch, 'noreply', {}, 150)).toEqual({ status: 'timeout', response: null });
  expect(await push(ch, 'later', {})).toEqual({ status: 'ok', response: { later: true } });
  const pushed = nextEvent(ch, 'joined');
  ch.push('push_me', {}, 200);
  expect(await pushed).toEqual({ status: 'connected' });
});

test('the join error reply reaches the client and it retries', async () => {
  const s = socket();
  const ch = s.channel('room:secret');
  const errors: unknown[] = [];
  ch.join().receive('error', (e) => errors.push(e));
  await until(() => errors.length >= 2, 3000, 'two join errors');
  expect(errors[0]).toEqual({ reason: 'unauthorized' });
  ch.leave();
});

test('an endpoint given with a trailing slash works, over WebSocket and long-poll (paths route as Plug does)', async () => {
  for (const transport of [WebSocket, LongPoll]) {
    const s = new Socket(`ws://127.0.0.1:${srv.port}/socket/`, {
      transport: transport as never,
      reconnectAfterMs: () => 20,
    });
    sockets.push(s);
    s.connect();
    const ch = s.channel('room:slash', {});
    await joined(ch);
    expect(await push(ch, 'new_msg', { body: 'slash' })).toEqual({
      status: 'ok',
      response: { echo: { body: 'slash' } },
    });
  }
  // Other paths are still not ours.
  const res = await fetch(`http://127.0.0.1:${srv.port}/socket/websocketx`);
  expect(res.status).toBe(404);
});

test('authToken travels in Sec-WebSocket-Protocol', async () => {
  authTokens.length = 0;
  const s = socket({ authToken: 'secret+/token' });
  await joined(s.channel('room:auth'));
  expect(authTokens).toEqual(['secret+/token']);
});

test('broadcasts among several clients; broadcastFrom skips the sender', async () => {
  const chans = await Promise.all(
    [0, 1, 2].map(async () => {
      const ch = socket().channel('room:party');
      await joined(ch);
      return ch;
    }),
  );
  const got = chans.map((ch) => nextEvent(ch, 'shout'));
  chans[0]!.push('shout', { n: 1 }, 200);
  expect(await Promise.all(got)).toEqual([{ n: 1 }, { n: 1 }, { n: 1 }]);
  const seen: unknown[] = [];
  chans[0]!.on('shout', (p) => {
    seen.push(['sender', p]);
  });
  const others = chans.slice(1).map((ch) => nextEvent(ch, 'shout'));
  chans[0]!.push('shout_from', { n: 2 }, 200);
  expect(await Promise.all(others)).toEqual([{ n: 2 }, { n: 2 }]);
  await sleep(30);
  expect(seen).toEqual([]);
  const server = chans.map((ch) => nextEvent(ch, 'news'));
  srv.rt.broadcast('room:party', 'news', { from: 'server' });
  expect(await Promise.all(server)).toEqual([{ from: 'server' }, { from: 'server' }, { from: 'server' }]);
});

test('binary push and receive (ArrayBuffer both ways)', async () => {
  const ch = socket().channel('room:bin');
  await joined(ch);
  const data = new Uint8Array([1, 2, 250]).buffer;
  const reply = await new Promise<unknown>((resolve) => {
    ch.push('upload', data as unknown as object).receive('ok', resolve);
  });
  expect(reply).toBeInstanceOf(ArrayBuffer);
  expect(Buffer.from(reply as ArrayBuffer)).toEqual(Buffer.from([...Buffer.from('got:'), 1, 2, 250]));
  const blob = nextEvent(ch, 'blob');
  ch.push('push_binary', {}, 200);
  expect(Buffer.from((await blob) as ArrayBuffer)).toEqual(Buffer.from([1, 2, 3]));
  const bcast = nextEvent(ch, 'blob');
  srv.rt.broadcast('room:bin', 'blob', Buffer.from([4, 5]));
  expect(Buffer.from((await bcast) as ArrayBuffer)).toEqual(Buffer.from([4, 5]));
});

test('rejoins after the server drops the connection (forced disconnect 1001, then a TCP drop)', async () => {
  const s = socket({}, { user: 'rejoiner' });
  const ch = s.channel('room:again');
  let oks = 0;
  ch.join().receive('ok', () => {
    oks++;
  });
  await until(() => oks === 1, 2000, 'first join');
  srv.rt.disconnect('user:rejoiner');
  await until(() => oks === 2, 3000, 'rejoin after 1001');
  for (const conn of srv.rt.connections)
    if (conn.id === 'user:rejoiner') (conn.transport as unknown as { terminate(): void }).terminate();
  await until(() => oks === 3, 3000, 'rejoin after TCP drop');
  expect(await push(ch, 'new_msg', { still: 'here' })).toEqual({ status: 'ok', response: { echo: { still: 'here' } } });
});

test('heartbeats keep the socket open past the idle timeout, and ping works', async () => {
  // A server that closes a socket silent for IDLE_MS; the client beats every 300 ms (phoenix.js
  // closes by itself when a reply takes longer than that) for 2.5 idle timeouts. Without the
  // heartbeats the server would close it (1001) within the span.
  const IDLE_MS = 1200;
  const own = await startServer({ idleTimeoutMs: IDLE_MS }, (rt) => rt.channel('room:*', roomChannel));
  const s = new Socket(`ws://127.0.0.1:${own.port}/socket`, {
    transport: WebSocket as never,
    heartbeatIntervalMs: 300,
    reconnectAfterMs: () => 20,
    rejoinAfterMs: () => 20,
  });
  let closes = 0;
  let beats = 0;
  s.onClose(() => {
    closes++;
  });
  s.onMessage((m) => {
    const { topic, event } = m as { topic: string; event: string };
    if (topic === 'phoenix' && event === 'phx_reply') beats++;
  });
  try {
    s.connect();
    await joined(s.channel('room:hb'));
    const start = Date.now();
    await until(() => Date.now() - start > 2.5 * IDLE_MS, 10_000, 'two and a half idle timeouts');
    expect(own.rt.stats().idleDisconnects).toBe(0);
    expect(closes).toBe(0);
    expect(beats).toBeGreaterThanOrEqual(5);
    const before = beats;
    const rtt = await new Promise<number>((r) => {
      s.ping(r);
    });
    expect(Number.isFinite(rtt)).toBe(true);
    expect(beats).toBeGreaterThan(before); // the ping is a heartbeat the server answered
  } finally {
    await new Promise<void>((r) => s.disconnect(() => r()));
    await own.close();
  }
});

describe('long-poll', () => {
  test('forced long-poll: join, push/reply, broadcast, binary push (base64), leave', async () => {
    const s = socket({ transport: LongPoll as never });
    const ch = s.channel('room:lp', { reply: { via: 'lp' } });
    expect(await joined(ch)).toEqual({ via: 'lp' });
    expect(await push(ch, 'new_msg', { a: 1 })).toEqual({ status: 'ok', response: { echo: { a: 1 } } });
    const news = nextEvent(ch, 'news');
    srv.rt.broadcast('room:lp', 'news', { lp: true });
    expect(await news).toEqual({ lp: true });
    const r = await new Promise((resolve) => {
      ch.push('upload_json', new Uint8Array([7, 8]).buffer as unknown as object).receive('ok', resolve);
    });
    expect(r).toEqual({ binary: true, hex: '0708' });
    expect(srv.rt.stats().transports.longpoll!.sessions).toBeGreaterThanOrEqual(1);
    await new Promise<void>((resolve) => {
      ch.leave().receive('ok', () => resolve());
    });
  });

  test('falls back to long-poll when WebSocket upgrades fail', async () => {
    // A front server that serves long-poll but refuses every upgrade (as a broken proxy would).
    const rt = new RealtimeServer({ checkOrigin: false, longpoll: { windowMs: 500 } });
    rt.channel('room:*', roomChannel);
    const front = http.createServer((req, res) => {
      if (!rt.handleHttp(req, res)) res.writeHead(404).end();
    });
    front.on('upgrade', (_req, sock) => sock.destroy());
    await new Promise<void>((r) => front.listen(0, '127.0.0.1', r));
    try {
      const s = new Socket(`ws://127.0.0.1:${(front.address() as AddressInfo).port}/socket`, {
        transport: WebSocket as never,
        longPollFallbackMs: 300,
        reconnectAfterMs: () => 20,
      });
      sockets.push(s);
      s.connect();
      const ch = s.channel('room:fallback');
      await joined(ch);
      expect(await push(ch, 'new_msg', { fb: 1 })).toEqual({ status: 'ok', response: { echo: { fb: 1 } } });
      expect(rt.stats().transports.longpoll!.sessions).toBe(1);
      await new Promise<void>((r) => s.disconnect(() => r()));
      sockets.pop();
    } finally {
      await rt.close();
      front.closeAllConnections();
      await new Promise<void>((r) => front.close(() => r()));
    }
  });
});

test('Presence helper shows the same list on three clients as they come and go', async () => {
  const topic = 'presence:lobby';
  const clients = new Map<string, { socket: Socket; ch: ClientChannel; presence: ClientPresence }>();
  const listOf = (p: ClientPresence) =>
    p
      .list(
        (key: string, { metas }: { metas: { status?: string }[] }) =>
          `${key}${metas[0]?.status ? `:${metas[0].status}` : ''}`,
      )
      .sort();

  async function arrive(user: string): Promise<void> {
    const s = socket({}, { user });
    const ch = s.channel(topic);
    const p = new ClientPresence(ch);
    clients.set(user, { socket: s, ch, presence: p });
    await joined(ch);
  }
  const allSee = (expected: string[]) =>
    until(
      () => [...clients.values()].every((c) => JSON.stringify(listOf(c.presence)) === JSON.stringify(expected)),
      3000,
      `everyone to see ${expected.join(',')}`,
    );

  await arrive('ann');
  await arrive('bob');
  await arrive('cy');
  await allSee(['ann', 'bob', 'cy']);
  expect(Object.keys(presence.list(topic)).sort()).toEqual(['ann', 'bob', 'cy']);

  // bob leaves (channel leave), then cy's connection drops
  const bob = clients.get('bob')!;
  clients.delete('bob');
  bob.ch.leave();
  await allSee(['ann', 'cy']);
  const cy = clients.get('cy')!;
  clients.delete('cy');
  await new Promise<void>((r) => cy.socket.disconnect(() => r()));
  await allSee(['ann']);

  // two arrive again, ann updates her meta: one diff (new in joins, old in leaves)
  await arrive('dee');
  await arrive('cy');
  await allSee(['ann', 'cy', 'dee']);
  const ann = clients.get('ann')!;
  expect(await push(ann.ch, 'set_status', { status: 'away' })).toEqual({ status: 'ok', response: {} });
  await allSee(['ann:away', 'cy', 'dee']);
  const meta = presence.list(topic).ann!.metas[0]!;
  expect(meta).toMatchObject({ status: 'away', phx_ref: expect.any(String), phx_ref_prev: expect.any(String) });
  expect(meta.phx_ref).toHaveLength(16);
});

test('drain: phoenix.js sees close 1012 and keeps trying to reconnect (1012 is not 1000)', async () => {
  const s2 = await startServer({}, (rt) => rt.channel('room:*', roomChannel));
  try {
    const client = new Socket(`ws://127.0.0.1:${s2.port}/socket`, {
      transport: WebSocket as never,
      reconnectAfterMs: () => 20,
    });
    sockets.push(client);
    const codes: number[] = [];
    let errorsAfterDrain = 0;
    let drained = false;
    client.onClose((e) => {
      codes.push((e as unknown as { code: number }).code);
    });
    client.onError(() => {
      if (drained) errorsAfterDrain++;
    });
    client.connect();
    await joined(client.channel('room:drain'));
    await s2.rt.drain({ batchSize: 10, intervalMs: 0 });
    drained = true;
    await until(() => codes.includes(1012), 2000, 'close 1012');
    // new upgrades are refused with 503 while draining: the client keeps retrying
    await until(() => errorsAfterDrain >= 2, 3000, 'reconnect attempts');
  } finally {
    for (const c of sockets.splice(0)) await new Promise<void>((r) => c.disconnect(() => r()));
    await s2.close();
  }
});
