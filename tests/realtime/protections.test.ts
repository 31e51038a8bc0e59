/**
 * Hostile and broken clients: frame size, flood, malformed frames, slow readers, idle, drain.
 * Each offender is refused or closed alone, with a log line; other sockets never notice.
 */
import type { Socket } from 'node:net';
import { RawClient, roomChannel, sleep, startServer, until, upgradeStatus, type TestServer } from './helpers';
import type { RealtimeLogger } from '../../src/realtime';

interface Line {
  level: string;
  obj: object;
  msg?: string;
}
function captureLogger(): RealtimeLogger & { lines: Line[] } {
  const lines: Line[] = [];
  const at = (level: string) => (obj: object, msg?: string) => {
    lines.push({ level, obj, msg });
  };
  return { lines, debug: at('debug'), info: at('info'), warn: at('warn'), error: at('error') };
}

let srv: TestServer;
const logger = captureLogger();
beforeAll(async () => {
  srv = await startServer(
    {
      logger,
      maxFrameBytes: 1024,
      rateLimit: { messages: 50, intervalMs: 1000 },
      maxProtocolErrors: 5,
      maxBufferedBytes: 1024 * 1024,
      slowClientGraceMs: 100,
    },
    (rt) => rt.channel('room:*', roomChannel),
  );
});
afterAll(() => srv.close());

const v2 = () => `${srv.wsUrl}?vsn=2.0.0`;
const HB_OK = (ref: string) => [null, ref, 'phoenix', 'phx_reply', { status: 'ok', response: {} }];

async function bystander(): Promise<RawClient> {
  const c = await RawClient.connect(v2());
  await c.call(['1', '1', 'room:calm', 'phx_join', {}]);
  return c;
}

test('oversize frame ⇒ that socket closed 1009; others unaffected', async () => {
  const other = await bystander();
  const c = await RawClient.connect(v2());
  c.sendText(JSON.stringify([null, '1', 'phoenix', 'heartbeat', { pad: 'x'.repeat(2000) }]));
  expect((await c.closed).code).toBe(1009);
  expect(await other.call([null, '9', 'phoenix', 'heartbeat', {}])).toEqual(HB_OK('9'));
  await other.close();
});

test('malformed frames are dropped with a log line; the socket lives until maxProtocolErrors, then 1008', async () => {
  const other = await bystander();
  const c = await RawClient.connect(v2());
  logger.lines.length = 0;
  const before = srv.rt.stats().protocolErrors;
  c.sendText('not json');
  c.sendText('["1","2","room:calm"]');
  c.sendText('[null,"3",42,"heartbeat",{}]');
  c.sendBinary(Buffer.from([0, 200, 200, 200, 200, 65])); // header lengths lie
  expect(await c.call([null, '5', 'phoenix', 'heartbeat', {}])).toEqual(HB_OK('5'));
  expect(srv.rt.stats().protocolErrors - before).toBe(4);
  expect(logger.lines.filter((l) => l.msg === 'realtime: malformed frame dropped').length).toBeGreaterThanOrEqual(3);
  c.sendText('{"x":1}');
  expect((await c.closed).code).toBe(1008);
  expect(logger.lines.some((l) => l.msg === 'realtime: too many malformed frames, closing socket')).toBe(true);
  expect(await other.call([null, '9', 'phoenix', 'heartbeat', {}])).toEqual(HB_OK('9'));
  await other.close();
});

test('inbound flood ⇒ rate limited, closed 1008, counted', async () => {
  const other = await bystander();
  const c = await RawClient.connect(v2());
  for (let i = 0; i < 200; i++) c.send([null, String(i), 'phoenix', 'heartbeat', {}]);
  expect((await c.closed).code).toBe(1008);
  expect(srv.rt.stats().rateLimited).toBe(1);
  expect(logger.lines.some((l) => l.msg === 'realtime: inbound rate limit exceeded, closing socket')).toBe(true);
  expect(await other.call([null, '9', 'phoenix', 'heartbeat', {}])).toEqual(HB_OK('9'));
  await other.close();
});

test('a client that stops reading is cut off once its unsent bytes exceed the cap; readers keep receiving', async () => {
  const reader = await bystander();
  await reader.call(['2', '2', 'room:firehose', 'phx_join', {}]);
  const slow = await RawClient.connect(v2());
  await slow.call(['1', '1', 'room:firehose', 'phx_join', {}]);
  // Stop reading at the TCP level: the server's writes pile up.
  (slow.ws as unknown as { _socket: Socket })._socket.pause();
  const big = { blob: 'y'.repeat(64 * 1024) };
  // About 128 KB per tick: a reader in this very process keeps up; the paused one falls behind
  // and, once over the cap for longer than the grace period, is cut off.
  let sent = 0;
  while (srv.rt.stats().slowClientDisconnects === 0 && sent < 3000) {
    srv.rt.broadcast('room:firehose', 'chunk', big);
    sent++;
    if (sent % 2 === 0) await sleep(2);
  }
  expect(srv.rt.stats().slowClientDisconnects).toBe(1);
  for (let received = 0; received < sent; received++) {
    const f = await reader.json(5000);
    expect((f as unknown[])[3]).toBe('chunk');
  }
  expect(logger.lines.some((l) => l.msg?.startsWith('realtime: slow client'))).toBe(true);
  slow.terminate();
  await reader.close();
});

test('connect handler that throws ⇒ 403, server fine', async () => {
  const s = await startServer({
    connect: () => {
      throw new Error('db down');
    },
  });
  try {
    expect((await upgradeStatus(`${s.wsUrl}?vsn=2.0.0`)).status).toBe(403);
    expect((await upgradeStatus(`${s.wsUrl}?vsn=2.0.0`)).status).toBe(403);
  } finally {
    await s.close();
  }
});

test('upgrade on an unknown path ⇒ 404', async () => {
  expect((await upgradeStatus(`ws://127.0.0.1:${srv.port}/other/websocket`)).status).toBe(404);
});

test('drain closes every socket with 1012 in batches and refuses new connections (503)', async () => {
  const s = await startServer({});
  try {
    const clients = await Promise.all(Array.from({ length: 5 }, () => RawClient.connect(`${s.wsUrl}?vsn=2.0.0`)));
    const closedAt: number[] = [];
    const closes = clients.map((c) =>
      c.closed.then((r) => {
        closedAt.push(Date.now());
        return r.code;
      }),
    );
    const t0 = Date.now();
    await s.rt.drain({ batchSize: 2, intervalMs: 60 });
    expect(Date.now() - t0).toBeGreaterThanOrEqual(110);
    expect(await Promise.all(closes)).toEqual([1012, 1012, 1012, 1012, 1012]);
    expect((await upgradeStatus(`${s.wsUrl}?vsn=2.0.0`)).status).toBe(503);
    expect(s.rt.stats().sockets).toBe(0);
  } finally {
    await s.close();
  }
});

test('a channel whose terminate throws, or a bad reply payload, is contained', async () => {
  const s = await startServer({}, (rt) =>
    rt.channel('bad:*', {
      join: () => ({ status: 'ok' }),
      handleIn: (event) => (event === 'array' ? { reply: 'ok', response: [1, 2] as unknown as object } : undefined),
      terminate: () => {
        throw new Error('terminate boom');
      },
    }),
  );
  try {
    const c = await RawClient.connect(`${s.wsUrl}?vsn=2.0.0`);
    await c.call(['1', '1', 'bad:x', 'phx_join', {}]);
    expect(await c.call(['1', '2', 'bad:x', 'array', {}])).toEqual([
      '1',
      '1',
      'bad:x',
      'phx_error',
      { reason: 'channel_crash' },
    ]);
    expect(await c.call([null, '3', 'phoenix', 'heartbeat', {}])).toEqual(HB_OK('3'));
    await c.close();
  } finally {
    await s.close();
  }
});

test('a hostile Host header or request target does not break connect', async () => {
  const net = await import('node:net');
  const status = await new Promise<string>((resolve) => {
    const sock = net.connect(srv.port, '127.0.0.1', () => {
      sock.write(
        'GET /socket/websocket?vsn=2.0.0 HTTP/1.1\r\nHost: a b\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n' +
          'Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n',
      );
    });
    sock.once('data', (d) => {
      resolve(d.toString().split('\r\n')[0]!);
      sock.destroy();
    });
    sock.on('error', () => resolve('error'));
  });
  expect(status).toMatch(/^HTTP\/1\.1 (101|400)/);
});

test('work queued behind a busy handler or a pending join is capped (socket closed 1008)', async () => {
  const s = await startServer({ rateLimit: false }, (rt) => rt.channel('room:*', roomChannel));
  try {
    const c = await RawClient.connect(`${s.wsUrl}?vsn=2.0.0`);
    await c.call(['1', '1', 'room:busy', 'phx_join', {}]);
    c.send(['1', '2', 'room:busy', 'slow', { ms: 300 }]);
    for (let i = 0; i < 1100; i++) c.send(['1', String(i + 3), 'room:busy', 'new_msg', {}]);
    expect((await c.closed).code).toBe(1008);

    const d = await RawClient.connect(`${s.wsUrl}?vsn=2.0.0`);
    d.send(['1', '1', 'room:slow', 'phx_join', { delay: 300 }]);
    for (let i = 0; i < 1100; i++) d.send([null, String(i), 'phoenix', 'heartbeat', {}]);
    expect((await d.closed).code).toBe(1008);
    expect(s.rt.stats().rateLimited).toBe(2);
  } finally {
    await s.close();
  }
});

test('log lines clients cause are rate-limited per message (a crash a client provokes 30 times: 5 lines)', async () => {
  const lines = captureLogger();
  // A channel with no handleIn: every push crashes it (as in Phoenix) and writes an error line.
  const own = await startServer({ logger: lines, logLimit: { lines: 5, intervalMs: 600_000 } }, (rt) =>
    rt.channel('mute:*', { join: () => ({ status: 'ok' }) }),
  );
  try {
    const c = await RawClient.connect(`${own.wsUrl}?vsn=2.0.0`);
    for (let i = 1; i <= 30; i++) {
      await c.call([String(i), String(i), 'mute:a', 'phx_join', {}]);
      c.send([String(i), `p${i}`, 'mute:a', 'anything', {}]);
      expect(((await c.json()) as unknown[])[3]).toBe('phx_error');
    }
    expect(own.rt.stats().channelCrashes).toBe(30);
    const crashed = lines.lines.filter((l) => l.msg === 'realtime: channel crashed');
    expect(crashed.length).toBe(5);
    expect(crashed.every((l) => l.level === 'error')).toBe(true);
    await c.close();
  } finally {
    await own.close();
  }
});

test('an upgrade whose connect never settles is answered 503 at upgradeTimeoutMs; others connect meanwhile', async () => {
  const own = await startServer({
    upgradeTimeoutMs: 300,
    connect: (params) => (params.hang === '1' ? new Promise(() => {}) : { assigns: {} }),
  });
  try {
    const stuck = upgradeStatus(`${own.wsUrl}?vsn=2.0.0&hang=1`);
    expect((await upgradeStatus(`${own.wsUrl}?vsn=2.0.0`)).status).toBe(101);
    expect((await stuck).status).toBe(503);
    expect(own.rt.stats().connectsRefused).toBe(1);
  } finally {
    await own.close();
  }
});

test('over the overall budget for unsent bytes the largest non-reader is cut first; a reader keeps every event', async () => {
  // Per-socket caps out of the way: only the overall budget can cut anyone here.
  const own = await startServer(
    { maxBufferedBytes: 256 * 1024 * 1024, slowClientGraceMs: 600_000, maxTotalBufferedBytes: 4 * 1024 * 1024 },
    (rt) => rt.channel('room:*', roomChannel),
  );
  const url = `${own.wsUrl}?vsn=2.0.0`;
  const big = { blob: 'y'.repeat(64 * 1024) };
  let sent = 0;
  const send = async (n: number) => {
    for (let i = 0; i < n; i++) {
      own.rt.broadcast('room:firehose', 'chunk', big);
      sent++;
      if (sent % 2 === 0) await sleep(2);
    }
  };
  try {
    const reader = await RawClient.connect(url);
    await reader.call(['1', '1', 'room:firehose', 'phx_join', {}]);
    // RawClient reads its socket all the time (frames queue in memory until asked for).
    const cut: string[] = [];
    const nonReader = async (name: string) => {
      const c = await RawClient.connect(url);
      await c.call(['1', '1', 'room:firehose', 'phx_join', {}]);
      (c.ws as unknown as { _socket: Socket })._socket.pause();
      void c.closed.then(() => cut.push(name));
      return c;
    };
    const first = await nonReader('first');
    await send(60); // the first non-reader falls ~4 MB behind before the others stop reading
    const others = [await nonReader('second'), await nonReader('third')];
    while (own.rt.stats().slowClientDisconnects === 0 && sent < 3000) await send(2);
    expect(own.rt.stats().slowClientDisconnects).toBe(1);
    // Reading again, the cut one learns it was closed; the others get what was kept for them.
    for (const c of [first, ...others]) (c.ws as unknown as { _socket: Socket })._socket.resume();
    await until(() => cut.length > 0, 10_000, 'the cut socket closed');
    expect(cut).toEqual(['first']);
    // The reader was never cut and gets every event.
    for (let received = 0; received < sent; received++)
      expect(((await reader.json(10_000)) as unknown[])[3]).toBe('chunk');
    expect(reader.ws.readyState).toBe(reader.ws.OPEN);
    for (const c of [first, ...others]) c.terminate();
    await reader.close();
  } finally {
    await own.close();
  }
});
