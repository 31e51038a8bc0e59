/**
 * Phoenix wire-protocol conformance over WebSocket, raw frames (phoenix-protocol.md §G 1-41).
 */
import { RawClient, roomChannel, startServer, upgradeStatus, sleep, until, type TestServer } from './helpers';
import { V2Serializer, type ConnectInfo } from '../../src/realtime';
import type { OutboundMessage } from '../../src/realtime';

let srv: TestServer;
const connects: { params: unknown; info: ConnectInfo }[] = [];

beforeAll(async () => {
  srv = await startServer(
    {
      checkOrigin: ['//example.com'],
      connect: (params, info) => {
        connects.push({ params, info });
        if (params.reject === 'yes') return { error: true };
        if (params.reject === '429') return { error: true, status: 429 };
        return { assigns: { user: params.user ?? null }, id: typeof params.sid === 'string' ? params.sid : null };
      },
    },
    (rt) => rt.channel('room:*', roomChannel),
  );
});
afterAll(() => srv.close());

const v2 = () => `${srv.wsUrl}?vsn=2.0.0`;
const OK = (response: unknown = {}) => ({ status: 'ok', response });

describe('connect / transport', () => {
  test('G1 v2 connect: 101 and array frames', async () => {
    const c = await RawClient.connect(v2());
    expect(await c.call([null, '1', 'phoenix', 'heartbeat', {}])).toEqual([null, '1', 'phoenix', 'phx_reply', OK()]);
    await c.close();
  });

  test('G2 no vsn ⇒ V1 objects, no join_ref key', async () => {
    const c = await RawClient.connect(srv.wsUrl);
    const reply = await c.call({ topic: 'phoenix', event: 'heartbeat', payload: {}, ref: '1' });
    expect(reply).toEqual({ topic: 'phoenix', event: 'phx_reply', payload: OK(), ref: '1' });
    expect(Object.keys(reply as object).sort()).toEqual(['event', 'payload', 'ref', 'topic']);
    await c.close();
  });

  test('G3 bad vsn ⇒ 403; 2.0.5 ⇒ V2', async () => {
    for (const vsn of ['3.0.0', '2.0', 'abc', '2.1.0']) {
      expect((await upgradeStatus(`${srv.wsUrl}?vsn=${vsn}`)).status).toBe(403);
    }
    const c = await RawClient.connect(`${srv.wsUrl}?vsn=2.0.5`);
    expect(await c.call([null, '7', 'phoenix', 'heartbeat', {}])).toEqual([null, '7', 'phoenix', 'phx_reply', OK()]);
    await c.close();
    const c1 = await RawClient.connect(`${srv.wsUrl}?vsn=1.0.0`);
    expect(await c1.call({ topic: 'phoenix', event: 'heartbeat', payload: {}, ref: '2' })).toEqual({
      topic: 'phoenix',
      event: 'phx_reply',
      payload: OK(),
      ref: '2',
    });
    await c1.close();
  });

  test('G4 connect refused ⇒ 403, or the handler status', async () => {
    expect((await upgradeStatus(`${v2()}&reject=yes`)).status).toBe(403);
    expect((await upgradeStatus(`${v2()}&reject=429`)).status).toBe(429);
  });

  test('G5 origin check', async () => {
    expect((await upgradeStatus(v2(), { headers: { Origin: 'http://notallowed.com' } })).status).toBe(403);
    expect((await upgradeStatus(v2(), { headers: { Origin: 'https://example.com' } })).status).toBe(101);
    expect((await upgradeStatus(v2())).status).toBe(101);
    expect((await upgradeStatus(v2(), { headers: { Origin: 'null' } })).status).toBe(403);
  });

  test('G6 auth token subprotocol: phoenix echoed, token decoded (std and url-safe alphabets)', async () => {
    connects.length = 0;
    const r = await upgradeStatus(v2(), { protocols: ['phoenix', 'base64url.bearer.phx.dG9rZW4'] });
    expect(r).toEqual({ status: 101, protocol: 'phoenix' });
    expect(connects[0]!.info.authToken).toBe('token');
    // "??>" encodes to "Pz8+" (std) / "Pz8-" (url-safe): both must decode.
    for (const b64 of ['Pz8+', 'Pz8-']) {
      connects.length = 0;
      expect((await upgradeStatus(v2(), { protocols: ['phoenix', `base64url.bearer.phx.${b64}`] })).status).toBe(101);
      expect(connects[0]!.info.authToken).toBe('??>');
    }
    connects.length = 0;
    expect((await upgradeStatus(v2())).protocol).toBe('');
    expect(connects[0]!.info.authToken).toBeNull();
  });

  test('G7 params decoded like Plug', async () => {
    connects.length = 0;
    await upgradeStatus(`${srv.wsUrl}?token=abc&user[id]=1&vsn=2.0.0`);
    expect(connects[0]!.params).toEqual({ token: 'abc', user: { id: '1' }, vsn: '2.0.0' });
    connects.length = 0;
    await upgradeStatus(`${srv.wsUrl}?a=1&&vsn=2.0.0&t=a+b&token=undefined`);
    expect(connects[0]!.params).toEqual({ a: '1', vsn: '2.0.0', t: 'a b', token: 'undefined' });
  });

  test('G8 wrong method / plain GET ⇒ 400', async () => {
    const post = await fetch(`${srv.httpUrl}/socket/websocket`, { method: 'POST' });
    expect(post.status).toBe(400);
    const get = await fetch(`${srv.httpUrl}/socket/websocket?vsn=2.0.0`);
    expect(get.status).toBe(400);
  });
});

describe('heartbeat', () => {
  let c: RawClient;
  beforeEach(async () => {
    c = await RawClient.connect(v2());
  });
  afterEach(() => c.close());

  test('G9 heartbeat with no channels', async () => {
    expect(await c.call([null, '1', 'phoenix', 'heartbeat', {}])).toEqual([null, '1', 'phoenix', 'phx_reply', OK()]);
  });
  test('G10 heartbeat carrying a join_ref ⇒ reply join_ref null', async () => {
    expect(await c.call(['9', '2', 'phoenix', 'heartbeat', {}])).toEqual([null, '2', 'phoenix', 'phx_reply', OK()]);
  });
  test('G11 other event on phoenix ⇒ unmatched topic', async () => {
    expect(await c.call(['1', '3', 'phoenix', 'ping', {}])).toEqual([
      null,
      '3',
      'phoenix',
      'phx_reply',
      { status: 'error', response: { reason: 'unmatched topic' } },
    ]);
  });
});

test('G12 idle timeout closes quiet sockets, heartbeats keep them open', async () => {
  const s = await startServer({ idleTimeoutMs: 300 });
  try {
    const quiet = await RawClient.connect(`${s.wsUrl}?vsn=2.0.0`);
    const alive = await RawClient.connect(`${s.wsUrl}?vsn=2.0.0`);
    const beat = setInterval(() => alive.send([null, 'hb', 'phoenix', 'heartbeat', {}]), 100);
    const closed = await quiet.closed;
    expect(closed.code).toBe(1001);
    await sleep(200);
    clearInterval(beat);
    expect(alive.ws.readyState).toBe(alive.ws.OPEN);
    expect(s.rt.stats().idleDisconnects).toBe(1);
    await alive.close();
  } finally {
    await s.close();
  }
});

describe('join', () => {
  let c: RawClient;
  beforeEach(async () => {
    c = await RawClient.connect(v2());
  });
  afterEach(() => c.close());

  test('G13 join ok', async () => {
    expect(await c.call(['1', '1', 'room:lobby', 'phx_join', { a: 1 }])).toEqual([
      '1',
      '1',
      'room:lobby',
      'phx_reply',
      OK(),
    ]);
  });
  test('G14 join ok with reply payload', async () => {
    expect(await c.call(['1', '1', 'room:lobby', 'phx_join', { reply: { x: 1 } }])).toEqual([
      '1',
      '1',
      'room:lobby',
      'phx_reply',
      OK({ x: 1 }),
    ]);
  });
  test('G15 join refused, no phx_close; retries get the same answer', async () => {
    const refused = (n: string) => [
      n,
      n,
      'room:secret',
      'phx_reply',
      { status: 'error', response: { reason: 'unauthorized' } },
    ];
    expect(await c.call(['1', '1', 'room:secret', 'phx_join', {}])).toEqual(refused('1'));
    expect(await c.call(['2', '2', 'room:secret', 'phx_join', {}])).toEqual(refused('2'));
    expect(await c.drain(50)).toEqual([]);
    // still unjoined
    expect(await c.call(['2', '3', 'room:secret', 'new_msg', {}])).toEqual([
      null,
      '3',
      'room:secret',
      'phx_reply',
      { status: 'error', response: { reason: 'unmatched topic' } },
    ]);
  });
  test('G16 join crashes ⇒ join crashed', async () => {
    expect(await c.call(['4', '4', 'room:crash', 'phx_join', {}])).toEqual([
      '4',
      '4',
      'room:crash',
      'phx_reply',
      { status: 'error', response: { reason: 'join crashed' } },
    ]);
  });
  test('G17 unmatched topic join ⇒ join_ref null', async () => {
    expect(await c.call(['1', '1', 'nope', 'phx_join', {}])).toEqual([
      null,
      '1',
      'nope',
      'phx_reply',
      { status: 'error', response: { reason: 'unmatched topic' } },
    ]);
  });
  test('G18 101st channel refused', async () => {
    for (let i = 1; i <= 100; i++) c.send([String(i), String(i), `room:x${i}`, 'phx_join', {}]);
    for (let i = 1; i <= 100; i++)
      expect(await c.json()).toEqual([String(i), String(i), `room:x${i}`, 'phx_reply', OK()]);
    expect(await c.call(['201', '201', 'room:x101', 'phx_join', {}])).toEqual([
      '201',
      '201',
      'room:x101',
      'phx_reply',
      { status: 'error', response: { reason: 'too many channels joined' } },
    ]);
    // re-joining an already joined topic is not a new channel
    expect(await c.call(['202', '202', 'room:x5', 'phx_join', {}])).toEqual([
      '202',
      '202',
      'room:x5',
      'phx_reply',
      OK(),
    ]);
    expect(await c.json()).toEqual(['5', '5', 'room:x5', 'phx_close', {}]);
  });
  test('G19 duplicate join: new reply, then phx_close for the old join_ref; later pushes use the new one', async () => {
    await c.call(['1', '1', 'room:lobby', 'phx_join', {}]);
    c.send(['2', '2', 'room:lobby', 'phx_join', { push_on_join: true }]);
    expect(await c.json()).toEqual(['2', '2', 'room:lobby', 'phx_reply', OK()]);
    expect(await c.json()).toEqual(['1', '1', 'room:lobby', 'phx_close', {}]);
    expect(await c.json()).toEqual(['2', null, 'room:lobby', 'joined', { status: 'connected' }]);
    expect(await c.call(['2', '3', 'room:lobby', 'push_me', {}])).toEqual([
      '2',
      null,
      'room:lobby',
      'joined',
      { status: 'connected' },
    ]);
  });
  test('G20 join with null join_ref: pushes use the ref', async () => {
    expect(await c.call([null, '5', 'room:a', 'phx_join', {}])).toEqual([null, '5', 'room:a', 'phx_reply', OK()]);
    expect(await c.call([null, '6', 'room:a', 'push_me', {}])).toEqual([
      '5',
      null,
      'room:a',
      'joined',
      { status: 'connected' },
    ]);
  });
  test('frames sent during a slow join wait for it and keep their order', async () => {
    c.send(['1', '1', 'room:slow', 'phx_join', { delay: 80 }]);
    c.send(['1', '2', 'room:slow', 'new_msg', { n: 1 }]);
    c.send([null, '3', 'phoenix', 'heartbeat', {}]);
    expect(await c.json()).toEqual(['1', '1', 'room:slow', 'phx_reply', OK()]);
    // The heartbeat is answered by the socket, the push by the (async) channel: either may come first.
    const rest = [await c.json(), await c.json()] as unknown[][];
    rest.sort((a, b) => String(a[1]).localeCompare(String(b[1])));
    expect(rest).toEqual([
      ['1', '2', 'room:slow', 'phx_reply', OK({ echo: { n: 1 } })],
      [null, '3', 'phoenix', 'phx_reply', OK()],
    ]);
  });
});

describe('channel traffic', () => {
  let c: RawClient;
  beforeEach(async () => {
    c = await RawClient.connect(v2());
    await c.call(['1', '1', 'room:lobby', 'phx_join', {}]);
  });
  afterEach(() => c.close());

  test('G21 push with reply', async () => {
    expect(await c.call(['1', '2', 'room:lobby', 'new_msg', { body: 'hi' }])).toEqual([
      '1',
      '2',
      'room:lobby',
      'phx_reply',
      OK({ echo: { body: 'hi' } }),
    ]);
  });
  test('G22 custom status and bare ok', async () => {
    expect(await c.call(['1', '2', 'room:lobby', 'error_reply', {}])).toEqual([
      '1',
      '2',
      'room:lobby',
      'phx_reply',
      { status: 'error', response: { e: 1 } },
    ]);
    expect(await c.call(['1', '3', 'room:lobby', 'ok_bare', {}])).toEqual(['1', '3', 'room:lobby', 'phx_reply', OK()]);
  });
  test('G23 noreply sends nothing; a later socket.reply answers the ref', async () => {
    c.send(['1', '2', 'room:lobby', 'noreply', {}]);
    expect(await c.drain(80)).toEqual([]);
    expect(await c.call(['1', '3', 'room:lobby', 'later', {}])).toEqual([
      '1',
      '3',
      'room:lobby',
      'phx_reply',
      OK({ later: true }),
    ]);
  });
  test('G24 server push', async () => {
    expect(await c.call(['1', '2', 'room:lobby', 'push_me', {}])).toEqual([
      '1',
      null,
      'room:lobby',
      'joined',
      { status: 'connected' },
    ]);
  });
  test('G25 broadcast reaches every joined socket; broadcast_from skips the sender', async () => {
    const others = await Promise.all([RawClient.connect(v2()), RawClient.connect(`${srv.wsUrl}`)]);
    await others[0]!.call(['7', '7', 'room:lobby', 'phx_join', {}]);
    await others[1]!.call({ topic: 'room:lobby', event: 'phx_join', payload: {}, ref: '3', join_ref: '3' });
    c.send(['1', '2', 'room:lobby', 'shout', { m: 1 }]);
    expect(await c.json()).toEqual([null, null, 'room:lobby', 'shout', { m: 1 }]);
    expect(await others[0]!.json()).toEqual([null, null, 'room:lobby', 'shout', { m: 1 }]);
    expect(await others[1]!.json()).toEqual({ topic: 'room:lobby', event: 'shout', payload: { m: 1 }, ref: null });
    c.send(['1', '3', 'room:lobby', 'shout_from', { m: 2 }]);
    expect(await others[0]!.json()).toEqual([null, null, 'room:lobby', 'shout', { m: 2 }]);
    expect(await c.drain(50)).toEqual([]);
    srv.rt.broadcast('room:lobby', 'news', { n: 3 });
    expect(await c.json()).toEqual([null, null, 'room:lobby', 'news', { n: 3 }]);
    expect(await others[0]!.json()).toEqual([null, null, 'room:lobby', 'news', { n: 3 }]);
    await Promise.all(others.map((o) => o.close()));
  });
  test('G26 null join_ref on a joined topic is delivered', async () => {
    expect(await c.call([null, '3', 'room:lobby', 'new_msg', {}])).toEqual([
      '1',
      '3',
      'room:lobby',
      'phx_reply',
      OK({ echo: {} }),
    ]);
  });
  test('G27 stale join_ref after a duplicate join ⇒ nothing', async () => {
    c.send(['2', '2', 'room:lobby', 'phx_join', {}]);
    await c.json();
    await c.json();
    c.send(['1', '4', 'room:lobby', 'new_msg', {}]);
    expect(await c.drain(80)).toEqual([]);
  });
  test('G28 push on an unjoined topic ⇒ unmatched topic', async () => {
    expect(await c.call(['7', '8', 'room:other', 'new_msg', {}])).toEqual([
      null,
      '8',
      'room:other',
      'phx_reply',
      { status: 'error', response: { reason: 'unmatched topic' } },
    ]);
  });
  test('G29 extra array elements ignored', async () => {
    expect(await c.call(['1', '9', 'room:lobby', 'new_msg', {}, 'x'])).toEqual([
      '1',
      '9',
      'room:lobby',
      'phx_reply',
      OK({ echo: {} }),
    ]);
  });
  test('events are handled one at a time in order (slow handler first)', async () => {
    c.send(['1', '2', 'room:lobby', 'slow', { ms: 60 }]);
    c.send(['1', '3', 'room:lobby', 'new_msg', { n: 2 }]);
    expect(await c.json()).toEqual(['1', '2', 'room:lobby', 'phx_reply', OK({ slow: true })]);
    expect(await c.json()).toEqual(['1', '3', 'room:lobby', 'phx_reply', OK({ echo: { n: 2 } })]);
  });
  test('channel assigns start as a copy of the connection assigns', async () => {
    const reply = (await c.call(['1', '2', 'room:lobby', 'assigns', {}])) as unknown[];
    expect(reply[4]).toEqual(OK({ assigns: { user: null, joinedWith: {} } }));
  });
});

describe('leave / close / error', () => {
  let c: RawClient;
  beforeEach(async () => {
    c = await RawClient.connect(v2());
    await c.call(['1', '1', 'room:lobby', 'phx_join', {}]);
  });
  afterEach(() => c.close());
  const unmatched = (ref: string, topic = 'room:lobby') => [
    null,
    ref,
    topic,
    'phx_reply',
    { status: 'error', response: { reason: 'unmatched topic' } },
  ];

  test('G30 leave: reply then phx_close; then unjoined', async () => {
    c.send(['1', '5', 'room:lobby', 'phx_leave', {}]);
    expect(await c.json()).toEqual(['1', '5', 'room:lobby', 'phx_reply', OK()]);
    expect(await c.json()).toEqual(['1', '1', 'room:lobby', 'phx_close', {}]);
    expect(await c.call(['1', '6', 'room:lobby', 'new_msg', {}])).toEqual(unmatched('6'));
  });
  test('G31 leave with null join_ref', async () => {
    c.send([null, '5', 'room:lobby', 'phx_leave', {}]);
    expect(await c.json()).toEqual(['1', '5', 'room:lobby', 'phx_reply', OK()]);
    expect(await c.json()).toEqual(['1', '1', 'room:lobby', 'phx_close', {}]);
  });
  test('G32 leave with stale join_ref ⇒ nothing', async () => {
    c.send(['0', '5', 'room:lobby', 'phx_leave', {}]);
    expect(await c.drain(80)).toEqual([]);
    expect(await c.call(['1', '6', 'room:lobby', 'new_msg', {}])).toEqual([
      '1',
      '6',
      'room:lobby',
      'phx_reply',
      OK({ echo: {} }),
    ]);
  });
  test('G33 leave on a never-joined topic ⇒ ok reply with its own join_ref, no phx_close', async () => {
    c.send(['3', '6', 'room:z', 'phx_leave', {}]);
    expect(await c.json()).toEqual(['3', '6', 'room:z', 'phx_reply', OK()]);
    expect(await c.drain(50)).toEqual([]);
  });
  test('G34 graceful stop ⇒ phx_close (after the reply when there is one)', async () => {
    c.send(['1', '2', 'room:lobby', 'stop', {}]);
    expect(await c.json()).toEqual(['1', '1', 'room:lobby', 'phx_close', {}]);
    await c.call(['3', '3', 'room:lobby', 'phx_join', {}]);
    c.send(['3', '4', 'room:lobby', 'stop_reply', {}]);
    expect(await c.json()).toEqual(['3', '4', 'room:lobby', 'phx_reply', OK({ bye: true })]);
    expect(await c.json()).toEqual(['3', '3', 'room:lobby', 'phx_close', {}]);
    expect(await c.call(['3', '5', 'room:lobby', 'new_msg', {}])).toEqual(unmatched('5'));
  });
  test('G35 channel crash ⇒ phx_error to that topic only; socket and other channels live on; rejoin works', async () => {
    await c.call(['2', '2', 'room:other', 'phx_join', {}]);
    c.send(['1', '3', 'room:lobby', 'crash', {}]);
    expect(await c.json()).toEqual(['1', '1', 'room:lobby', 'phx_error', { reason: 'channel_crash' }]);
    expect(await c.call(['1', '4', 'room:lobby', 'new_msg', {}])).toEqual(unmatched('4'));
    expect(await c.call(['2', '5', 'room:other', 'new_msg', {}])).toEqual([
      '2',
      '5',
      'room:other',
      'phx_reply',
      OK({ echo: {} }),
    ]);
    expect(await c.call(['6', '6', 'room:lobby', 'phx_join', {}])).toEqual(['6', '6', 'room:lobby', 'phx_reply', OK()]);
    expect(srv.rt.stats().channelCrashes).toBeGreaterThanOrEqual(1);
  });
});

test('G36 forced disconnect by socket id ⇒ close 1001 for every socket with that id', async () => {
  const a = await RawClient.connect(`${v2()}&sid=users_socket:42`);
  const b = await RawClient.connect(`${v2()}&sid=users_socket:42`);
  const other = await RawClient.connect(`${v2()}&sid=users_socket:43`);
  await a.call(['1', '1', 'room:lobby', 'phx_join', {}]);
  srv.rt.disconnect('users_socket:42');
  expect((await a.closed).code).toBe(1001);
  expect((await b.closed).code).toBe(1001);
  expect(await a.drain(0)).toEqual([]); // no channel frames before the close
  expect(await other.call([null, '1', 'phoenix', 'heartbeat', {}])).toEqual([null, '1', 'phoenix', 'phx_reply', OK()]);
  await other.close();
});

test('G37 client close stops its channels server-side (terminate is called)', async () => {
  const terminated: string[] = [];
  const s = await startServer({}, (rt) =>
    rt.channel('t:*', {
      join: () => ({ status: 'ok' }),
      terminate: (reason, socket) => {
        terminated.push(`${socket.topic}:${reason}`);
      },
    }),
  );
  try {
    const c = await RawClient.connect(`${s.wsUrl}?vsn=2.0.0`);
    await c.call(['1', '1', 't:a', 'phx_join', {}]);
    await c.call(['2', '2', 't:b', 'phx_join', {}]);
    expect(s.rt.stats().channels).toBe(2);
    c.terminate();
    await until(() => terminated.length === 2);
    expect(terminated.sort()).toEqual(['t:a:closed', 't:b:closed']);
    expect(s.rt.stats()).toMatchObject({ channels: 0, sockets: 0 });
  } finally {
    await s.close();
  }
});

describe('binary (V2)', () => {
  let c: RawClient;
  beforeEach(async () => {
    c = await RawClient.connect(v2());
    await c.call(['1', '1', 'room', 'phx_join', {}]);
  });
  afterEach(() => c.close());
  beforeAll(() => {
    srv.rt.channel('room', roomChannel);
  });

  const push = (joinRef: string, ref: string, topic: string, event: string, data: Buffer) =>
    Buffer.concat([
      Buffer.from([0, joinRef.length, ref.length, topic.length, event.length]),
      Buffer.from(joinRef + ref + topic + event),
      data,
    ]);

  test('G38 client binary push reaches handleIn as a Buffer; G39 binary reply', async () => {
    c.sendBinary(push('1', '2', 'room', 'upload', Buffer.from([0xde, 0xad])));
    const f = await c.next();
    expect(f.isBinary).toBe(true);
    // 01 | join_ref_len ref_len topic_len status_len | "1" "2" "room" "ok" | payload
    expect(f.data).toEqual(
      Buffer.concat([
        Buffer.from([1, 1, 1, 4, 2]),
        Buffer.from('12roomok'),
        Buffer.from('got:'),
        Buffer.from([0xde, 0xad]),
      ]),
    );
  });
  test('G40 binary push (no ref) and binary broadcast', async () => {
    c.send(['1', '2', 'room', 'push_binary', {}]);
    const f = await c.next();
    expect(f.isBinary).toBe(true);
    expect(f.data).toEqual(
      Buffer.concat([Buffer.from([0, 1, 4, 4]), Buffer.from('1roomblob'), Buffer.from([1, 2, 3])]),
    );
    srv.rt.broadcast('room', 'blob', Buffer.from([9, 8]));
    const b = await c.next();
    expect(b.isBinary).toBe(true);
    expect(b.data).toEqual(Buffer.concat([Buffer.from([2, 4, 4]), Buffer.from('roomblob'), Buffer.from([9, 8])]));
  });
  test('G41 a field over 255 bytes is refused, never truncated', async () => {
    const reply = (await c.call(['1', '2', 'room', 'push_big_field', {}])) as unknown[];
    expect(reply.slice(0, 4)).toEqual(['1', '2', 'room', 'phx_reply']);
    expect((reply[4] as { status: string }).status).toBe('error');
    expect(await c.drain(30)).toEqual([]);
  });
  test('binary broadcast to a V1 socket is skipped for that socket only', async () => {
    const v1 = await RawClient.connect(srv.wsUrl);
    await v1.call({ topic: 'room', event: 'phx_join', payload: {}, ref: '1', join_ref: '1' });
    srv.rt.broadcast('room', 'blob', Buffer.from([7]));
    expect((await c.next()).isBinary).toBe(true);
    expect(await v1.drain(50)).toEqual([]);
    await v1.close();
  });
});

test('a broadcast is encoded once per serializer and the same frame buffer is shared', async () => {
  const clients = await Promise.all([1, 2, 3].map(() => RawClient.connect(v2())));
  for (const c of clients) await c.call(['1', '1', 'room:shared', 'phx_join', {}]);
  const spy = jest.spyOn(V2Serializer, 'encode');
  srv.rt.broadcast('room:shared', 'e', { x: 1 });
  for (const c of clients) expect(await c.json()).toEqual([null, null, 'room:shared', 'e', { x: 1 }]);
  expect(spy.mock.calls.filter(([m]) => (m as OutboundMessage).kind === 'broadcast')).toHaveLength(1);
  spy.mockRestore();
  await Promise.all(clients.map((c) => c.close()));
});
