/** The adapter seam: two servers ("nodes") joined by an in-memory bus that echoes to self like NOTIFY does. */
import type { PubSubAdapter, PubSubMessage } from '../../src/realtime';
import { RawClient, roomChannel, startServer, until, type TestServer } from './helpers';

/** Every published message goes to every node, the publisher included (as PostgreSQL NOTIFY does). */
class MemoryBus {
  handlers: ((m: PubSubMessage) => void)[] = [];
  published: PubSubMessage[] = [];
  adapter(): PubSubAdapter {
    let handler: ((m: PubSubMessage) => void) | null = null;
    return {
      publish: (m) => {
        // Serialise like a real transport would, so only JSON-safe data crosses.
        const wire = JSON.stringify(m);
        this.published.push(m);
        setImmediate(() => {
          for (const h of this.handlers) h(JSON.parse(wire));
        });
      },
      onMessage: (h) => {
        handler = h;
        this.handlers.push((m) => handler?.(m));
      },
      close: () => {
        handler = null;
      },
    };
  }
}

let a: TestServer;
let b: TestServer;
const bus = new MemoryBus();
beforeAll(async () => {
  const opts = (n: string) => ({
    pubsub: bus.adapter(),
    connect: (p: Record<string, unknown>) => ({ id: typeof p.sid === 'string' ? p.sid : null, assigns: { node: n } }),
  });
  a = await startServer(opts('a'), (rt) => rt.channel('room:*', roomChannel));
  b = await startServer(opts('b'), (rt) => rt.channel('room:*', roomChannel));
});
afterAll(async () => {
  await a.close();
  await b.close();
});

test('a broadcast on one node reaches sockets on the other exactly once (own echo ignored)', async () => {
  const ca = await RawClient.connect(`${a.wsUrl}?vsn=2.0.0`);
  const cb = await RawClient.connect(`${b.wsUrl}?vsn=2.0.0`);
  await ca.call(['1', '1', 'room:x', 'phx_join', {}]);
  await cb.call(['1', '1', 'room:x', 'phx_join', {}]);
  a.rt.broadcast('room:x', 'hello', { from: 'a' });
  expect(await ca.json()).toEqual([null, null, 'room:x', 'hello', { from: 'a' }]);
  expect(await cb.json()).toEqual([null, null, 'room:x', 'hello', { from: 'a' }]);
  // channel broadcast (from a client on b) also crosses
  cb.send(['1', '2', 'room:x', 'shout', { from: 'client on b' }]);
  expect(await ca.json()).toEqual([null, null, 'room:x', 'shout', { from: 'client on b' }]);
  expect(await cb.json()).toEqual([null, null, 'room:x', 'shout', { from: 'client on b' }]);
  // binary crosses as base64 and arrives as bytes
  a.rt.broadcast('room:x', 'blob', Buffer.from([1, 2, 3]));
  const f = await cb.next();
  expect(f.isBinary).toBe(true);
  expect(f.data).toEqual(Buffer.concat([Buffer.from([2, 6, 4]), Buffer.from('room:xblob'), Buffer.from([1, 2, 3])]));
  expect(bus.published.at(-1)).toMatchObject({ topic: 'room:x', event: 'blob', binary: true, payload: 'AQID' });
  expect(await ca.next().then((x) => x.isBinary)).toBe(true);
  expect(await ca.drain(50)).toEqual([]);
  expect(await cb.drain(0)).toEqual([]);
  await ca.close();
  await cb.close();
});

test('forced disconnect by socket id works across nodes', async () => {
  const cb = await RawClient.connect(`${b.wsUrl}?vsn=2.0.0&sid=user:1`);
  a.rt.disconnect('user:1');
  expect((await cb.closed).code).toBe(1001);
});

test('server.subscribe sees broadcasts from every node until unsubscribed', async () => {
  const seen: unknown[] = [];
  const off = b.rt.subscribe('events:all', (event, payload) => seen.push([event, payload]));
  a.rt.broadcast('events:all', 'one', { n: 1 });
  await until(() => seen.length === 1);
  off();
  a.rt.broadcast('events:all', 'two', { n: 2 });
  await new Promise((r) => setTimeout(r, 30));
  expect(seen).toEqual([['one', { n: 1 }]]);
});

test('broadcast payloads must be objects or binary (Swift drops anything else)', () => {
  expect(() => a.rt.broadcast('room:x', 'e', 'text' as unknown as object)).toThrow(TypeError);
  expect(() => a.rt.broadcast('room:x', 'e', [1] as unknown as object)).toThrow(TypeError);
  expect(() => a.rt.broadcast('room:x', 'e', null as unknown as object)).toThrow(TypeError);
});
