/**
 * Fuzz: thousands of random and mutated frames at a live server. It must stay up, keep
 * answering heartbeats, and bystander sockets must not notice anything.
 */
import { RawClient, roomChannel, sleep, startServer, type TestServer } from './helpers';

/** Small seeded PRNG (mulberry32) so a failure can be replayed. */
function rng(seed: number): () => number {
  return () => {
    seed |= 0;
    seed = (seed + 0x6d2b79f5) | 0;
    let t = Math.imul(seed ^ (seed >>> 15), 1 | seed);
    t = (t + Math.imul(t ^ (t >>> 7), 61 | t)) ^ t;
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

const SEED = Number(process.env.FUZZ_SEED ?? 0x5eed);
const rand = rng(SEED);
const int = (n: number) => Math.floor(rand() * n);
const pick = <T>(xs: readonly T[]): T => xs[int(xs.length)]!;

const TOPICS = [
  'room:lobby',
  'room:crash',
  'room:secret',
  'room:slow',
  'phoenix',
  'nope',
  '',
  'room:' + 'x'.repeat(300),
  'room:\u00e9\u{1f525}',
];
const EVENTS = [
  'phx_join',
  'phx_leave',
  'heartbeat',
  'new_msg',
  'crash',
  'stop',
  'stop_reply',
  'noreply',
  'upload',
  'shout',
  'later',
  'phx_reply',
  'phx_close',
  'phx_error',
  'assigns',
  'push_big_field',
];
const WEIRD: unknown[] = [
  null,
  true,
  0,
  -1,
  1e308,
  'str',
  '',
  [],
  {},
  { __proto__: { x: 1 } },
  { constructor: 'x' },
  [[[[[]]]]],
  'x'.repeat(500),
];

function randomValue(depth = 0): unknown {
  if (depth > 3) return pick(WEIRD);
  switch (int(6)) {
    case 0:
      return pick(WEIRD);
    case 1:
      return int(1000);
    case 2:
      return String.fromCharCode(...Array.from({ length: int(20) }, () => int(0xd7ff)));
    case 3:
      return Array.from({ length: int(4) }, () => randomValue(depth + 1));
    case 4:
      return Object.fromEntries(
        Array.from({ length: int(4) }, () => [
          pick(['a', 'status', 'reply', 'delay', '__proto__', 'body']),
          randomValue(depth + 1),
        ]),
      );
    default:
      return { ms: int(5), delay: int(5) };
  }
}

function validish(): unknown[] {
  const ref = () => pick([null, String(int(50)), int(50), '', {}]);
  return [ref(), ref(), pick(TOPICS), pick(EVENTS), randomValue()];
}

function binaryPush(lie: boolean): Buffer {
  const parts = [String(int(9)), String(int(99)), pick(TOPICS).slice(0, 40), pick(EVENTS)];
  const lens = parts.map((p) => Buffer.byteLength(p));
  if (lie) lens[int(4)] = int(256);
  const kind = rand() < 0.9 ? 0 : int(256);
  return Buffer.concat([
    Buffer.from([kind, ...lens]),
    Buffer.from(parts.join('')),
    Buffer.from(Array.from({ length: int(40) }, () => int(256))),
  ]);
}

function mutate(buf: Buffer): Buffer {
  const b = Buffer.from(buf);
  switch (int(4)) {
    case 0: // flip bytes
      for (let i = 0; i < 1 + int(4); i++) if (b.length) b[int(b.length)] = int(256);
      return b;
    case 1:
      return b.subarray(0, int(b.length + 1)); // truncate
    case 2:
      return Buffer.concat([b, b.subarray(int(b.length))]); // duplicate a tail
    default: {
      // splice random ASCII
      const at = int(b.length + 1);
      return Buffer.concat([
        b.subarray(0, at),
        Buffer.from(pick(['"', ']', '[', '{', ',', 'null', '\\', '\u0000'])),
        b.subarray(at),
      ]);
    }
  }
}

/** One fuzz frame: [data, isBinary]. */
function fuzzFrame(): [Buffer | string, boolean] {
  switch (int(8)) {
    case 0:
      return [Buffer.from(Array.from({ length: int(64) }, () => int(256))), true];
    case 1:
      return [Buffer.from(Array.from({ length: int(64) }, () => int(256))), false];
    case 2:
      return [JSON.stringify(validish()), false];
    case 3:
      return [mutate(Buffer.from(JSON.stringify(validish()))), rand() < 0.2];
    case 4:
      return [binaryPush(rand() < 0.5), true];
    case 5:
      return [
        JSON.stringify({ topic: pick(TOPICS), event: pick(EVENTS), payload: randomValue(), ref: String(int(9)) }),
        false,
      ];
    case 6:
      return [JSON.stringify(Array.from({ length: int(7) }, () => randomValue())), false];
    default:
      return [JSON.stringify(randomValue()), false];
  }
}

let srv: TestServer;
beforeAll(async () => {
  srv = await startServer({ maxFrameBytes: 4096, rateLimit: false, maxProtocolErrors: 1_000_000 }, (rt) => {
    rt.channel('room:*', roomChannel);
    rt.channel('phoenix', roomChannel);
  });
});
afterAll(() => srv.close());

const HB_OK = (ref: string) => [null, ref, 'phoenix', 'phx_reply', { status: 'ok', response: {} }];

test(`survives thousands of random and mutated frames (seed ${SEED})`, async () => {
  const errors: unknown[] = [];
  const onErr = (e: unknown) => errors.push(e);
  process.on('uncaughtException', onErr);
  process.on('unhandledRejection', onErr);

  // Bystanders: joined, receiving broadcasts the whole time.
  const bystanders = await Promise.all(
    [0, 1, 2].map(async (i) => {
      const c = await RawClient.connect(`${srv.wsUrl}${i === 2 ? '' : '?vsn=2.0.0'}`);
      if (i === 2) await c.call({ topic: 'room:calm', event: 'phx_join', payload: {}, ref: '1', join_ref: '1' });
      else await c.call(['1', '1', 'room:calm', 'phx_join', {}]);
      return c;
    }),
  );

  const modes = ['?vsn=2.0.0', '', '?vsn=1.0.0'];
  let fuzzer = await RawClient.connect(`${srv.wsUrl}${modes[0]}`);
  let mode = modes[0]!;
  let reconnects = 0;
  let sent = 0;
  const deadline = Date.now() + 8000;
  const TOTAL = 6000;
  let broadcasts = 0;
  while (sent < TOTAL && Date.now() < deadline) {
    if (fuzzer.ws.readyState !== fuzzer.ws.OPEN) {
      fuzzer.terminate();
      mode = modes[++reconnects % modes.length]!;
      fuzzer = await RawClient.connect(`${srv.wsUrl}${mode}`);
    }
    const [data, binary] = fuzzFrame();
    fuzzer.ws.send(data, { binary });
    sent++;
    if (sent % 200 === 0) {
      srv.rt.broadcast('room:calm', 'tick', { n: broadcasts++ });
      await sleep(1); // let the server breathe and the bystanders read
      await fuzzer.drain(0);
    }
  }
  expect(sent).toBeGreaterThanOrEqual(3000);

  // The server still answers, on the fuzz socket (if it survived) and on a fresh one.
  if (fuzzer.ws.readyState === fuzzer.ws.OPEN) {
    await fuzzer.drain(50);
    const v2 = mode === '?vsn=2.0.0';
    const want = v2
      ? HB_OK('final')
      : { topic: 'phoenix', event: 'phx_reply', payload: { status: 'ok', response: {} }, ref: 'final' };
    fuzzer.send(
      v2
        ? [null, 'final', 'phoenix', 'heartbeat', {}]
        : { topic: 'phoenix', event: 'heartbeat', payload: {}, ref: 'final' },
    );
    // Replies to earlier fuzz frames (slow joins, delayed replies) may still arrive first; the last
    // fuzz frames may also have made ws close the socket (bad UTF-8 ⇒ 1007, bad frame ⇒ 1002).
    const outcome = await Promise.race([
      (async () => {
        let reply: unknown;
        do reply = await fuzzer.json(5000);
        while (JSON.stringify(reply) !== JSON.stringify(want));
        return { reply };
      })(),
      fuzzer.closed.then((c) => ({ closed: c.code })),
    ]);
    if ('closed' in outcome) expect([1002, 1007, 1008, 1009]).toContain(outcome.closed);
    else expect(outcome.reply).toEqual(want);
  }
  const fresh = await RawClient.connect(`${srv.wsUrl}?vsn=2.0.0`);
  expect(await fresh.call([null, '1', 'phoenix', 'heartbeat', {}])).toEqual(HB_OK('1'));

  // Bystanders saw exactly the broadcasts, in order, and nothing else.
  for (const [i, b] of bystanders.entries()) {
    const got = await b.drain(50);
    const expected = Array.from({ length: broadcasts }, (_, n) =>
      i === 2
        ? { topic: 'room:calm', event: 'tick', payload: { n }, ref: null }
        : [null, null, 'room:calm', 'tick', { n }],
    );
    expect(got).toEqual(expected);
    expect(b.ws.readyState).toBe(b.ws.OPEN);
  }
  expect(await bystanders[0]!.call([null, '2', 'phoenix', 'heartbeat', {}])).toEqual(HB_OK('2'));
  expect(srv.rt.stats().protocolErrors).toBeGreaterThan(100);

  process.off('uncaughtException', onErr);
  process.off('unhandledRejection', onErr);
  expect(errors).toEqual([]);
  fuzzer.terminate();
  await fresh.close();
  await Promise.all(bystanders.map((b) => b.close()));
}, 30000);
