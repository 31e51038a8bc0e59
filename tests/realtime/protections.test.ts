/**
 * Hostile and broken clients: frame size, flood, malformed frames, slow readers, idle, drain.
 * Each offender is refused or closed alone, with a log line; other sockets never notice.
 */
import type { Socket } from 'node:net';
import { RawClient, roomChannel, sleep, startServer, upgradeStatus, type TestServer } from './helpers';
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
