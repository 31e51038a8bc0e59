/**
 * The cluster bus on each engine (src/bus): the in-memory one always; PostgreSQL NOTIFY with
 * PYRE_TEST_DATABASE_URL; Redis with PYRE_TEST_REDIS_URL (or PYRE_TEST_BUS=redis). What a node
 * sends reaches the others once, in order, whole however large; a node never hears itself.
 * "Nothing else arrives" is checked with a marker sent after (the bus keeps a sender's order).
 */
import { randomBytes } from 'node:crypto';
import pg from 'pg';
import type { Bus, BusTopic } from '../../src/bus/bus';
import { memoryBus, MemoryBusHub } from '../../src/bus/open';
import { createLogger } from '../../src/log';
import { TEST_BUS, testBus } from '../helpers/bus';
import { TEST_PG_URL } from '../helpers/db';
import { waitFor } from '../helpers/wait';

type Engine = 'memory' | 'postgres' | 'redis';
const ENGINES: Engine[] = [
  'memory',
  ...(TEST_PG_URL ? (['postgres'] as const) : []),
  ...(process.env.PYRE_TEST_REDIS_URL || TEST_BUS === 'redis' ? (['redis'] as const) : []),
];

interface Got {
  topic: BusTopic;
  m: any;
  from: string;
}

/** `n` started nodes on one channel of `engine`, each recording what it hears on every topic. */
async function nodes(engine: Engine, n: number, channel: string, hub = new MemoryBusHub()) {
  const lines: string[] = [];
  const logger = createLogger({ level: 'info', destination: { write: (s: string) => void lines.push(s) } });
  const list: Array<{ bus: Bus; got: Got[] }> = [];
  for (let i = 0; i < n; i++) {
    const bus = engine === 'memory' ? memoryBus(hub, logger) : testBus(channel, engine, logger);
    const got: Got[] = [];
    for (const topic of ['events', 'realtime', 'longpoll'] as const)
      bus.subscribe(topic, (m, from) => got.push({ topic, m, from }));
    list.push({ bus, got });
  }
  await Promise.all(list.map((x) => x.bus.start()));
  return { list, lines, close: () => Promise.all(list.map((x) => x.bus.close())) };
}

/** Waits until `to` has heard `marker` from `from`: everything `from` sent before it has arrived too. */
async function heardMarker(to: { got: Got[] }, from: Bus, marker: string): Promise<void> {
  await waitFor(`marker ${marker}`, () => to.got.some((g) => g.from === from.nodeId && g.m?.marker === marker), 10_000);
}

describe.each(ENGINES)('the cluster bus on %s', (engine) => {
  const channel = () => `pyre_bus_test_${randomBytes(4).toString('hex')}`;

  it('delivers to the addressed node only, in order, large messages whole', async () => {
    const { list, close } = await nodes(engine, 3, channel());
    const [a, b, c] = list as [(typeof list)[0], (typeof list)[0], (typeof list)[0]];
    try {
      const big = 'é'.repeat(30_000) + '"\\'.repeat(5000); // ~70 KB of UTF-8 that JSON has to escape
      a.bus.send(b.bus.nodeId, 'longpoll', { n: 1 });
      a.bus.send(b.bus.nodeId, 'longpoll', { n: 2, big });
      a.bus.send(b.bus.nodeId, 'longpoll', { n: 3 });
      c.bus.send(b.bus.nodeId, 'longpoll', { n: 4 });
      a.bus.publish('realtime', { marker: 'a' });
      c.bus.publish('realtime', { marker: 'c' });
      await Promise.all([heardMarker(b, a.bus, 'a'), heardMarker(b, c.bus, 'c'), heardMarker(c, a.bus, 'a')]);
      await heardMarker(a, c.bus, 'c');
      const direct = (x: typeof a) => x.got.filter((g) => g.topic === 'longpoll');
      expect(direct(a)).toEqual([]);
      expect(direct(c)).toEqual([]);
      expect(
        direct(b)
          .filter((g) => g.from === a.bus.nodeId)
          .map((g) => g.m),
      ).toEqual([{ n: 1 }, { n: 2, big }, { n: 3 }]);
      expect(
        direct(b)
          .filter((g) => g.from === c.bus.nodeId)
          .map((g) => g.m),
      ).toEqual([{ n: 4 }]);
    } finally {
      await close();
    }
  }, 30_000);

  it('2,000 messages of one tick and many more over many ticks arrive once each, in order', async () => {
    const name = channel();
    let frames = 0;
    let spy: pg.Client | undefined;
    if (engine === 'postgres') {
      spy = new pg.Client({ connectionString: TEST_PG_URL });
      await spy.connect();
      spy.on('notification', (n) => {
        frames++;
        expect(Buffer.byteLength(n.payload ?? '')).toBeLessThanOrEqual(7800);
      });
      await spy.query(`LISTEN ${name}`);
    }
    const { list, close } = await nodes(engine, 2, name);
    const [a, b] = list as [(typeof list)[0], (typeof list)[0]];
    try {
      for (let i = 0; i < 2000; i++) a.bus.publish('events', { i, pad: 'x'.repeat(i % 90) });
      let i = 2000;
      for (let tick = 0; tick < 40; tick++) {
        for (let k = 0; k < 1 + (tick % 5) * 30; k++) a.bus.publish('events', { i: i++, pad: 'z'.repeat(40) });
        await new Promise((r) => setImmediate(r));
      }
      a.bus.publish('events', { marker: 'end' });
      await heardMarker(b, a.bus, 'end');
      const seen = b.got.filter((g) => g.m.marker === undefined).map((g) => g.m.i);
      expect(seen).toEqual(Array.from({ length: i }, (_, n) => n));
      expect(b.got[1999]!.m.pad).toHaveLength(1999 % 90);
      if (engine === 'postgres') {
        await waitFor('the spy heard the batches', () => frames > 10, 5000);
        // Batched: far fewer NOTIFYs than messages.
        expect(frames).toBeLessThan(i / 20);
      }
    } finally {
      await close();
      await spy?.end();
    }
  }, 30_000);

  it('a node never hears its own messages; a message that is not JSON is dropped and said, its neighbours go', async () => {
    const { list, lines, close } = await nodes(engine, 2, channel());
    const [a, b] = list as [(typeof list)[0], (typeof list)[0]];
    try {
      // b answers every 'ping' it hears: once a has the answer, a's own ping has had its chance to come back.
      b.bus.subscribe('longpoll', (m, from) => {
        b.got.push({ topic: 'longpoll', m, from });
        if ((m as { ping?: number }).ping !== undefined) b.bus.send(from, 'realtime', { marker: 'pong' });
      });
      a.bus.publish('events', { i: 1 });
      a.bus.publish('events', { i: 2, bad: 1n });
      a.bus.publish('events', { i: 3 });
      a.bus.publish('longpoll', { ping: 1 });
      await heardMarker(a, b.bus, 'pong');
      expect(a.got.filter((g) => g.from === a.bus.nodeId)).toEqual([]);
      expect(a.got.filter((g) => g.topic !== 'realtime')).toEqual([]);
      expect(b.got.filter((g) => g.topic === 'events').map((g) => g.m)).toEqual([{ i: 1 }, { i: 3 }]);
      expect(lines.some((l) => l.includes('is not JSON'))).toBe(true);
    } finally {
      await close();
    }
  }, 30_000);

  it('reports each subscribed topic, and runs the reconnect hook on the first connection', async () => {
    const bus =
      engine === 'memory'
        ? memoryBus(new MemoryBusHub(), createLogger({ level: 'silent' }))
        : testBus(channel(), engine);
    let hooks = 0;
    bus.onReconnect(() => hooks++);
    bus.subscribe('events', () => undefined);
    bus.subscribe('new_work', () => undefined);
    expect(() => bus.subscribe('nope' as BusTopic, () => undefined)).toThrow('unknown topic "nope"');
    try {
      expect(bus.status()).toEqual({
        engine,
        connected: false,
        channels: { events: 'reconnecting', new_work: 'reconnecting' },
      });
      await bus.start();
      expect(bus.status()).toEqual({ engine, connected: true, channels: { events: 'ok', new_work: 'ok' } });
      expect(hooks).toBe(1);
    } finally {
      await bus.close();
    }
  });
});
