/** Pure functions: query decoding, origin rules, vsn negotiation, serializers, phx_ref. */
import { compileOriginCheck } from '../../src/realtime/origin';
import {
  decodeQuery,
  negotiateSerializer,
  nestedDeeperThan,
  presenceRef,
  LineBudget,
  RateLimitedLogger,
  ProtocolError,
  V1Serializer,
  V2Serializer,
} from '../../src/realtime';

describe('decodeQuery (Plug semantics)', () => {
  test.each([
    ['token=abc&user[id]=1&vsn=2.0.0', { token: 'abc', user: { id: '1' }, vsn: '2.0.0' }],
    ['?a=1&&b=2', { a: '1', b: '2' }],
    ['t=a+b&s=a%20b&p=%2B', { t: 'a b', s: 'a b', p: '+' }],
    ['a=1&a=2', { a: '2' }],
    ['a[0]=x&a[1]=y', { a: { 0: 'x', 1: 'y' } }],
    ['l[]=1&l[]=2', { l: ['1', '2'] }],
    ['a[b][c]=1', { a: { b: { c: '1' } } }],
    ['flag', { flag: '' }],
    ['bad=%E0%A4%A', { bad: '%E0%A4%A' }],
    ['__proto__[x]=1&constructor=2&ok=3', { ok: '3' }],
    ['cb=wss://x.io/a', { cb: 'wss://x.io/a' }],
  ])('%s', (q, expected) => {
    expect(decodeQuery(q)).toEqual(expected);
  });
  test('no prototype pollution', () => {
    decodeQuery('__proto__[polluted]=1&a[__proto__][polluted]=1');
    expect(({} as Record<string, unknown>).polluted).toBeUndefined();
  });
  test('names Object.prototype has (toString, valueOf, hasOwnProperty) are plain keys', () => {
    expect(decodeQuery('toString[x]=1&valueOf[]=2&hasOwnProperty=3')).toEqual({
      toString: { x: '1' },
      valueOf: ['2'],
      hasOwnProperty: '3',
    });
    expect((Object.prototype.toString as unknown as Record<string, unknown>).x).toBeUndefined();
  });
});

describe('nestedDeeperThan', () => {
  test.each([
    [1, 0],
    ['a', 0],
    [null, 0],
    [{}, 1],
    [[1, 2], 1],
    [{ a: [1] }, 2],
    [[[], [[]]], 3],
    [{ a: 1, b: { c: { d: {} } } }, 4],
  ])('%j is %i levels deep', (value, depth) => {
    expect(nestedDeeperThan(value, depth)).toBe(false);
    if (depth > 0) expect(nestedDeeperThan(value, depth - 1)).toBe(true);
  });
  test('a million levels, without overflowing the stack', () => {
    const deep = JSON.parse(`${'['.repeat(1_000_000)}${']'.repeat(1_000_000)}`) as unknown;
    expect(nestedDeeperThan(deep, 32)).toBe(true);
    expect(nestedDeeperThan(Buffer.alloc(10), 0)).toBe(false);
  });
});

describe('RateLimitedLogger', () => {
  test('writes `lines` lines of each message per window, then reports how many it left out', () => {
    const written: Array<[string, object, string | undefined]> = [];
    const at = (level: string) => (obj: object, msg?: string) => void written.push([level, obj, msg]);
    let now = 1000;
    const log = new RateLimitedLogger(
      { debug: at('debug'), info: at('info'), warn: at('warn'), error: at('error') },
      { lines: 2, intervalMs: 100 },
      () => now,
    );
    for (let i = 0; i < 5; i++) log.error({ i }, 'crashed');
    for (let i = 0; i < 3; i++) log.warn({ i }, 'crashed'); // another level is another message
    log.error({ i: 9 }, 'other');
    expect(written).toEqual([
      ['error', { i: 0 }, 'crashed'],
      ['error', { i: 1 }, 'crashed'],
      ['warn', { i: 0 }, 'crashed'],
      ['warn', { i: 1 }, 'crashed'],
      ['error', { i: 9 }, 'other'],
    ]);
    now += 99;
    log.error({ i: 5 }, 'crashed');
    expect(written.length).toBe(5);
    now += 1;
    log.error({ i: 6 }, 'crashed');
    expect(written[5]).toEqual(['error', { i: 6, suppressed: 4 }, 'crashed']);
    log.error({ i: 7 }, 'crashed');
    expect(written[6]).toEqual(['error', { i: 7 }, 'crashed']);
  });
});

describe('check origin', () => {
  const list = compileOriginCheck(['https://a.com', '//b.com:888', '//*.c.com']);
  test.each([
    [undefined, true],
    ['https://a.com', true],
    ['http://a.com', false],
    ['https://b.com:888', true],
    ['https://b.com', false],
    ['https://c.com', true],
    ['https://x.y.c.com', true],
    ['https://evilc.com', false],
    ['null', false],
    ['garbage', false],
  ])('list: %s ⇒ %s', (origin, ok) => {
    expect(list(origin, 'server.local', false)).toBe(ok);
  });
  test('true: host must equal the Host header, scheme/port ignored', () => {
    const same = compileOriginCheck(true);
    expect(same('https://app.io', 'app.io:4000', false)).toBe(true);
    expect(same('https://evil.io', 'app.io', false)).toBe(false);
    expect(same(undefined, 'app.io', false)).toBe(true);
  });
  test("'conn': scheme, host and port must match the request", () => {
    const conn = compileOriginCheck('conn');
    expect(conn('http://app.io:4000', 'app.io:4000', false)).toBe(true);
    expect(conn('https://app.io:4000', 'app.io:4000', false)).toBe(false);
    expect(conn('https://app.io', 'app.io', true)).toBe(true);
  });
  test('false allows everything; bad entries fail fast', () => {
    expect(compileOriginCheck(false)('null', undefined, false)).toBe(true);
    expect(() => compileOriginCheck(['a.com'])).toThrow(/invalid checkOrigin entry/);
  });
});

describe('negotiateSerializer', () => {
  test.each([
    [undefined, 'v1'],
    ['1.0.0', 'v1'],
    ['1.0.9', 'v1'],
    ['2.0.0', 'v2'],
    ['2.0.7', 'v2'],
    ['2.1.0', null],
    ['3.0.0', null],
    ['2.0', null],
    ['abc', null],
    ['', null],
    ['2.0.0-rc.1', null],
    ['2.0.1-rc.1', 'v2'],
    ['1.0.3-beta', 'v1'],
    ['02.0.0', null],
    ['2.0.0+build-7', 'v2'],
  ])('%s ⇒ %s', (vsn, name) => {
    expect(negotiateSerializer(vsn)?.name ?? null).toBe(name);
  });
  test('a repeated vsn param (array) is refused', () => {
    expect(negotiateSerializer(['2.0.0'])).toBeNull();
  });
});

describe('serializers', () => {
  const j = (b: Buffer) => JSON.parse(b.toString());
  test('V2 shapes', () => {
    expect(
      j(V2Serializer.encode({ kind: 'reply', joinRef: '1', ref: '2', topic: 't', status: 'ok', response: {} }).data),
    ).toEqual(['1', '2', 't', 'phx_reply', { status: 'ok', response: {} }]);
    expect(
      j(V2Serializer.encode({ kind: 'push', joinRef: '1', ref: null, topic: 't', event: 'e', payload: { a: 1 } }).data),
    ).toEqual(['1', null, 't', 'e', { a: 1 }]);
    expect(j(V2Serializer.encode({ kind: 'broadcast', topic: 't', event: 'e', payload: {} }).data)).toEqual([
      null,
      null,
      't',
      'e',
      {},
    ]);
  });
  test('V1 shapes never carry join_ref', () => {
    expect(
      j(
        V1Serializer.encode({ kind: 'push', joinRef: '1', ref: '1', topic: 't', event: 'phx_close', payload: {} }).data,
      ),
    ).toEqual({ topic: 't', event: 'phx_close', payload: {}, ref: '1' });
    expect(() => V1Serializer.encode({ kind: 'broadcast', topic: 't', event: 'e', payload: Buffer.from([1]) })).toThrow(
      ProtocolError,
    );
  });
  test('V2 binary decode: the Phoenix test-suite example', () => {
    const frame = Buffer.concat([
      Buffer.from([0, 2, 3, 5, 5]),
      Buffer.from('12123topicevent'),
      Buffer.from([65, 66, 67]),
    ]);
    const m = V2Serializer.decode(frame, true);
    expect(m).toEqual({ joinRef: '12', ref: '123', topic: 'topic', event: 'event', payload: Buffer.from('ABC') });
  });
  test('V2 binary decode rejects lies and wrong kinds', () => {
    expect(() => V2Serializer.decode(Buffer.from([0, 9, 9, 9, 9, 1]), true)).toThrow(ProtocolError);
    expect(() => V2Serializer.decode(Buffer.from([1, 0, 0, 0, 0]), true)).toThrow(ProtocolError);
    expect(() => V2Serializer.decode(Buffer.from([0, 0]), true)).toThrow(ProtocolError);
  });
  test('V2 text decode: refs strings, numbers kept as numbers (echoed as given), objects refused', () => {
    expect(V2Serializer.decode(Buffer.from('[1,2,"t","e",{}]'), false)).toMatchObject({ joinRef: 1, ref: 2 });
    expect(
      V2Serializer.encode({
        kind: 'reply',
        joinRef: 1,
        ref: 2,
        topic: 't',
        status: 'ok',
        response: {},
      }).data.toString(),
    ).toBe('[1,2,"t","phx_reply",{"status":"ok","response":{}}]');
    expect(V2Serializer.decode(Buffer.from([0, 0, 0, 1, 1, 0x74, 0x65]), true)).toMatchObject({ joinRef: '', ref: '' });
    expect(() => V2Serializer.decode(Buffer.from('[{},"2","t","e",{}]'), false)).toThrow(ProtocolError);
    expect(() => V2Serializer.decode(Buffer.from('{"topic":"t"}'), false)).toThrow(ProtocolError);
  });
  test('V1 decode requires topic, event, payload and ref', () => {
    expect(() => V1Serializer.decode(Buffer.from('{"topic":"t","event":"e","payload":{}}'), false)).toThrow(
      ProtocolError,
    );
    expect(V1Serializer.decode(Buffer.from('{"topic":"t","event":"e","payload":{},"ref":null}'), false)).toEqual({
      topic: 't',
      event: 'e',
      payload: {},
      ref: null,
      joinRef: null,
    });
  });
});

test('phx_ref: 16 url-safe base64 characters, unique', () => {
  const refs = new Set(Array.from({ length: 1000 }, () => presenceRef()));
  expect(refs.size).toBe(1000);
  for (const r of refs) expect(r).toMatch(/^[A-Za-z0-9_-]{16}$/);
});

describe('LineBudget', () => {
  test('keeps at most maxKeys windows: ended ones are forgotten first, then all', () => {
    let now = 0;
    const budget = new LineBudget({ lines: 1, intervalMs: 100 }, () => now, 3);
    for (const k of ['a', 'b', 'c']) expect(budget.take(k)).toBe(0);
    expect(budget.take('a')).toBeNull();
    // A fourth key while the three windows are current: all are forgotten, so 'a' may write again.
    expect(budget.take('d')).toBe(0);
    expect(budget.take('a')).toBe(0);
    expect(budget.take('a')).toBeNull();
    now = 150;
    // 'a' and 'd' ended: the new key makes room by dropping ended windows, not current ones.
    expect(budget.take('e')).toBe(0);
    expect(budget.take('e')).toBeNull();
  });
});
