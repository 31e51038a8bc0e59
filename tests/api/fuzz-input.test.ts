/**
 * Property: whatever JSON a client sends to `POST /api/tasks` or as a channel's `*_generate`
 * payload, the answer is a 2xx/4xx (an ok or error reply), never a 500, a crashed channel
 * (phx_error) or an error-level log line; and what is accepted stores only the model's parameters.
 *
 * Random bodies mix the model's real parameter names with names Object.prototype has, deep
 * nesting, numbers JSON.parse turns into Infinity or rounds, and odd unicode (NUL, unpaired
 * surrogates, BOM, bidi overrides, long graphemes).
 *
 *   PYRE_FUZZ_RUNS=10000 npx jest tests/api/fuzz-input.test.ts   # runs per path (default 200)
 *   PYRE_FUZZ_SEED=123 …                                            # replay a reported seed
 */
import { randomUUID } from 'node:crypto';
import { Writable } from 'node:stream';
import fc from 'fast-check';
import { createGateway, type Gateway } from '../../src/app';
import { TokenSigner } from '../../src/auth/tokens';
import { createLogger } from '../../src/log';
import { DEFAULT_MODELS, inputJsonSchema } from '../../src/tasks/models';
import { BACKENDS, freshDb, type TestDb } from '../helpers/db';
import { call, TEST_SECRET, testConfig } from '../helpers/gateway';
import { RawClient } from '../realtime/helpers';

const RUNS = Number(process.env.PYRE_FUZZ_RUNS || 200);
/** The gateway's realtime frame limit (RealtimeServer's default maxFrameBytes). */
const MAX_FRAME_BYTES = 64 * 1024;
/** Room for slow machines: about 0.5 s a run at most (a run is one to three round trips). */
const TIMEOUT_MS = Math.max(60_000, RUNS * 500);
const SEED = process.env.PYRE_FUZZ_SEED ? Number(process.env.PYRE_FUZZ_SEED) : undefined;
const signer = new TokenSigner(TEST_SECRET);
const token = signer.mint('fuzzer');

// ---- arbitraries -----------------------------------------------------------------------------

const PROTOTYPE_NAMES = [
  'constructor',
  '__proto__',
  'toString',
  'hasOwnProperty',
  'valueOf',
  'isPrototypeOf',
  'propertyIsEnumerable',
  'toLocaleString',
  '__defineGetter__',
  '__lookupGetter__',
  'prototype',
];
const PARAM_NAMES = [...new Set(DEFAULT_MODELS.flatMap((m) => Object.keys(m.params.shape)))];
const MODEL_NAMES = DEFAULT_MODELS.map((m) => m.name);

/** Strings a careless server mishandles: NUL, unpaired surrogates, BOM, bidi, ZWJ sequences, limits. */
const oddString = fc.oneof(
  fc.constantFrom(
    '',
    ' ',
    '\u0000',
    'a\u0000b',
    '\ud800',
    'x\udfff',
    '\ud83d',
    '\ufeff',
    '\u202eevil',
    '\u2028\u2029',
    '👩‍👩‍👧‍👦',
    'e\u0301\u0301\u0301',
    '\uffff',
    '\u{10ffff}',
    '𝕏',
    'x'.repeat(10_000),
    'x'.repeat(10_001),
    '%00',
    '${x}',
    '<script>',
  ),
  fc.string({ unit: 'binary', maxLength: 20 }),
  fc.string({ unit: 'grapheme', maxLength: 20 }),
);

/** A number literal put into the JSON text as is (JSON.stringify could not write these). */
const RAW = (literal: string) => `@@raw:${literal}@@`;
const rawNumber = fc
  .constantFrom('1e400', '-1e400', '123456789012345678901234567890', '-0', '1E-400', '0.1e1', '9007199254740993')
  .map(RAW);

const scalar = fc.oneof(
  oddString,
  rawNumber,
  fc.double(),
  fc.integer(),
  fc.constantFrom(0, 1, 2, 5, 12, 24, 512, 2048, 2.5, 1e308, Number.MAX_SAFE_INTEGER, true, false, null),
  fc.constantFrom('1:1', '16:9', '9:16', '1080p', 'jpg', 'image', 'video', 'text', ...MODEL_NAMES),
  fc.constantFrom('https://example.com/a.png', 'http://127.0.0.1/x.jpg', 'javascript:alert(1)', 'file:///etc/passwd'),
);

const key = fc.oneof(
  { weight: 3, arbitrary: fc.constantFrom(...PROTOTYPE_NAMES) },
  { weight: 3, arbitrary: fc.constantFrom(...PARAM_NAMES, 'type', 'prompt', 'model') },
  { weight: 2, arbitrary: oddString },
);

/** An object made from entries, so a `__proto__` key stays an own key (as JSON.parse makes it). */
const objectOf = (value: fc.Arbitrary<unknown>) =>
  fc.array(fc.tuple(key, value), { maxLength: 8 }).map((entries) => Object.fromEntries(entries));

/** `levels` arrays or objects one inside another. */
const deep = fc.tuple(fc.integer({ min: 1, max: 200 }), fc.boolean(), key).map(([levels, arrays, k]) => {
  let v: unknown = 1;
  for (let i = 0; i < levels; i++) v = arrays ? [v] : Object.fromEntries([[k, v]]);
  return v;
});

const value: fc.Arbitrary<unknown> = fc.letrec<{ v: unknown }>((tie) => ({
  v: fc.oneof(
    { depthSize: 'small', withCrossShrink: true },
    { weight: 12, arbitrary: scalar },
    { weight: 1, arbitrary: fc.array(tie('v'), { maxLength: 5 }) },
    { weight: 1, arbitrary: objectOf(tie('v')) },
    { weight: 1, arbitrary: deep },
  ),
})).v;

/** What a client would put in input_data: often a plausible start, then random keys on top. */
const inputData = fc
  .tuple(
    fc.option(
      fc.record(
        {
          prompt: fc.oneof(fc.constant('a cat'), oddString),
          type: fc.constantFrom('image', 'video', 'text'),
          model: fc.constantFrom(...MODEL_NAMES),
        },
        { requiredKeys: ['prompt'] },
      ),
      { freq: 3 },
    ),
    fc.option(
      fc
        .subarray([...PARAM_NAMES], { maxLength: 3 })
        .chain((names) => fc.tuple(...names.map((n) => fc.tuple(fc.constant(n), value)))),
      { freq: 2 },
    ),
    fc.option(objectOf(value), { freq: 2 }),
  )
  // Often nothing but a plausible start: valid bodies carrying odd strings must be tried too.
  .map(([base, params, extra]) => ({ ...(base ?? {}), ...Object.fromEntries(params ?? []), ...(extra ?? {}) }));

/** The JSON text of a value, with RAW(...) markers replaced by their literal. */
const text = (v: unknown) => (JSON.stringify(v) ?? 'null').replace(/"@@raw:([^"@]*)@@"/g, '$1');

const body = fc.oneof(
  {
    weight: 8,
    arbitrary: fc
      .tuple(inputData, fc.option(objectOf(value), { freq: 2 }))
      .map(([d, top]) => ({ ...(top ?? {}), input_data: d })),
  },
  { weight: 1, arbitrary: fc.record({ input_data: value }) },
  { weight: 1, arbitrary: value },
);

/** A few keys shared by many requests, so replays (same body) and conflicts (another body) happen. */
const idempotencyKey = fc.option(fc.constantFrom('k1', 'k2', 'fresh', 'fresh', 'fresh', 'fresh'), { freq: 2 });

// ---- the gateway -----------------------------------------------------------------------------

/** Which keys a stored input_data may have for a model: its input schema's, and type/model. */
function allowedKeys(model: string): Set<string> {
  const spec = DEFAULT_MODELS.find((m) => m.name === model)!;
  return new Set([...Object.keys(inputJsonSchema(spec).properties as object), 'type', 'model']);
}

describe.each(BACKENDS)('random JSON at the task API on %s', (backend) => {
  let gw: Gateway;
  let url: string;
  let tdb: TestDb;
  const logLines: string[] = [];

  beforeAll(async () => {
    tdb = await freshDb(backend);
    const sink = new Writable({
      write(chunk, _enc, cb) {
        logLines.push(...String(chunk).split('\n').filter(Boolean));
        cb();
      },
    });
    gw = await createGateway({
      config: testConfig({ AUTH_SECRET: TEST_SECRET, RATE_LIMIT_TASKS_PER_MINUTE: '0' }),
      logger: createLogger({ level: 'warn', destination: sink }),
      db: tdb.db,
    });
    url = await gw.listen();
  });
  afterAll(async () => {
    await gw.close();
    await tdb.drop();
  });

  /** Error-level (and worse) log lines: a 500 or a crash writes one. */
  const errorLines = () => logLines.filter((l) => (JSON.parse(l) as { level: number }).level >= 50);

  it(
    `POST /api/tasks: ${RUNS} random bodies, each answered 202 or 4xx naming the problem`,
    async () => {
      const statuses = new Map<number, number>();
      await fc.assert(
        fc.asyncProperty(body, idempotencyKey, async (b, k) => {
          const headers: Record<string, string> = { 'content-type': 'application/json' };
          if (k !== null) headers['idempotency-key'] = k === 'fresh' ? randomUUID() : k;
          const res = await call(`${url}/api/tasks`, { raw: text(b), token, headers });
          statuses.set(res.status, (statuses.get(res.status) ?? 0) + 1);
          if (res.status === 202) {
            const stored = res.body.data.input_data as Record<string, unknown>;
            const allowed = allowedKeys(res.body.data.model);
            for (const name of Object.keys(stored)) expect(allowed.has(name)).toBe(true);
            return;
          }
          expect([400, 409, 413, 422]).toContain(res.status);
          if (res.status === 422) {
            const fields = Object.entries(res.body.errors as Record<string, unknown>);
            expect(fields.length).toBeGreaterThan(0);
            for (const [, messages] of fields) {
              expect((messages as unknown[]).length).toBeGreaterThan(0);
              for (const m of messages as unknown[]) expect(typeof m).toBe('string');
            }
          } else {
            expect(typeof res.body.errors.detail).toBe('string');
          }
        }),
        { numRuns: RUNS, seed: SEED, endOnFailure: false },
      );
      // Both outcomes were exercised, not only refusals.
      process.stdout.write(`POST /api/tasks statuses: ${JSON.stringify(Object.fromEntries(statuses))}\n`);
      expect(statuses.get(202)).toBeGreaterThan(0);
      expect(statuses.get(422)).toBeGreaterThan(0);
      expect(errorLines()).toEqual([]);
    },
    TIMEOUT_MS,
  );

  it(
    `*_generate over a WebSocket: ${RUNS} random payloads, each answered ok or error; no channel crashes`,
    async () => {
      const wsUrl = `${url.replace(/^http/, 'ws')}/socket/websocket?vsn=2.0.0&token=${token}`;
      let client: RawClient | undefined;
      let used = 0;
      let ref = 0;
      const replies = { ok: 0, error: 0 };
      let tooBig = 0;
      // Three frames per run: a fresh socket every 50 runs stays under the 200 frames/s limit at any speed.
      const socket = async () => {
        if (client === undefined || used++ >= 50) {
          client?.ws.close();
          client = await RawClient.connect(wsUrl);
          used = 1;
        }
        return client;
      };
      /** Frames for `topic` until the reply to `r`; fails on phx_error. */
      const replyTo = async (c: RawClient, topic: string, r: string) => {
        for (;;) {
          const f = (await c.json(10_000)) as [string | null, string | null, string, string, Record<string, unknown>];
          if (f[2] !== topic) continue;
          expect(f[3]).not.toBe('phx_error');
          if (f[3] === 'phx_reply' && f[1] === r) return f[4] as { status: string; response: Record<string, unknown> };
        }
      };
      const generate = fc.constantFrom('image_generate', 'video_generate', 'text_generate');
      const payload = fc.oneof(
        { weight: 8, arbitrary: inputData.map(text) },
        { weight: 1, arbitrary: value.map(text) },
        { weight: 1, arbitrary: fc.uint8Array({ maxLength: 64 }).map((bytes) => Buffer.from(bytes)) },
      );
      await fc.assert(
        fc.asyncProperty(generate, payload, async (event, p) => {
          const c = await socket();
          const topic = `task:${randomUUID()}`;
          const joinRef = String(++ref);
          c.sendText(JSON.stringify([joinRef, joinRef, topic, 'phx_join', {}]));
          expect((await replyTo(c, topic, joinRef)).status).toBe('ok');
          const pushRef = String(++ref);
          if (Buffer.isBuffer(p)) {
            const head = [joinRef, pushRef, topic, event].map((s) => Buffer.from(s));
            c.sendBinary(Buffer.concat([Buffer.from([0, ...head.map((h) => h.length)]), ...head, p]));
          } else {
            const frame = `["${joinRef}","${pushRef}","${topic}","${event}",${p}]`;
            if (Buffer.byteLength(frame) > MAX_FRAME_BYTES) {
              // Over the frame limit the socket is closed with 1009 (documented), before any channel sees it.
              c.sendText(frame);
              expect((await c.closed).code).toBe(1009);
              client = undefined;
              tooBig++;
              return;
            }
            c.sendText(frame);
          }
          const reply = await replyTo(c, topic, pushRef);
          expect(['ok', 'error']).toContain(reply.status);
          replies[reply.status as 'ok' | 'error']++;
          if (reply.status === 'error') expect(typeof reply.response.reason).toBe('string');
          const leaveRef = String(++ref);
          c.sendText(JSON.stringify([joinRef, leaveRef, topic, 'phx_leave', {}]));
          expect((await replyTo(c, topic, leaveRef)).status).toBe('ok');
        }),
        { numRuns: RUNS, seed: SEED, endOnFailure: false },
      );
      client?.ws.close();
      process.stdout.write(`*_generate replies: ${JSON.stringify({ ...replies, closedTooBig: tooBig })}\n`);
      expect(replies.ok).toBeGreaterThan(0);
      expect(replies.error).toBeGreaterThan(0);
      expect(gw.realtime.stats().channelCrashes).toBe(0);
      expect(errorLines()).toEqual([]);
    },
    TIMEOUT_MS,
  );
});
