import { randomBytes } from 'node:crypto';
import pg from 'pg';
import { PgNotifyChannel } from '../../src/db/notify';
import { createLogger } from '../../src/log';
import { TEST_PG_URL } from '../helpers/db';
import { waitFor } from './helpers';

/** LISTEN/NOTIFY batching (src/db/notify.ts) on the real PostgreSQL: what is sent in one tick arrives whole, in order. */
const maybe = TEST_PG_URL ? describe : describe.skip;

maybe('PgNotifyChannel on PostgreSQL', () => {
  const channel = `pyre_test_${randomBytes(4).toString('hex')}`;
  const lines: string[] = [];
  const logger = createLogger({ level: 'info', destination: { write: (s: string) => void lines.push(s) } });
  let a: PgNotifyChannel<{ i: number; pad: string }>;
  let b: PgNotifyChannel<{ i: number; pad: string }>;
  let received: Array<{ i: number; pad: string }> = [];
  let notifications = 0;
  let spy: pg.Client;

  beforeAll(async () => {
    a = new PgNotifyChannel(TEST_PG_URL!, channel, 'node-a', logger);
    b = new PgNotifyChannel(TEST_PG_URL!, channel, 'node-b', logger);
    await a.listen(() => undefined);
    await b.listen((msgs) => received.push(...msgs));
    spy = new pg.Client({ connectionString: TEST_PG_URL });
    await spy.connect();
    spy.on('notification', (n) => {
      notifications++;
      expect(Buffer.byteLength(n.payload ?? '')).toBeLessThanOrEqual(7800);
    });
    await spy.query(`LISTEN ${channel}`);
  });
  afterAll(async () => {
    await Promise.all([a.close(), b.close(), spy.end()]);
  });

  it('2,000 messages sent in one tick arrive once each, in order, split under the 8,000-byte limit', async () => {
    received = [];
    notifications = 0;
    for (let i = 0; i < 2000; i++) a.send({ i, pad: 'x'.repeat(i % 90) });
    await waitFor('notifications', () => received.length >= 2000, 5000);
    expect(received.map((m) => m.i)).toEqual(Array.from({ length: 2000 }, (_, i) => i));
    expect(received[1999]!.pad).toHaveLength(1999 % 90);
    expect(notifications).toBeGreaterThan(10);
    expect(notifications).toBeLessThan(2000 / 20);
  });

  it('messages sent over many ticks keep their order (flushes never overtake each other)', async () => {
    received = [];
    let i = 0;
    for (let tick = 0; tick < 60; tick++) {
      for (let k = 0; k < 1 + (tick % 5) * 30; k++) a.send({ i: i++, pad: 'z'.repeat(40) });
      await new Promise((r) => setImmediate(r));
    }
    await waitFor('notifications', () => received.length >= i, 5000);
    expect(received.map((m) => m.i)).toEqual(Array.from({ length: i }, (_, n) => n));
  });

  it('a message too large for NOTIFY is dropped with an error line; its neighbours still arrive', async () => {
    received = [];
    a.send({ i: 1, pad: '' });
    a.send({ i: 2, pad: 'y'.repeat(8000) });
    a.send({ i: 3, pad: '' });
    await waitFor('notifications', () => received.length >= 2, 5000);
    await new Promise((r) => setTimeout(r, 100));
    expect(received.map((m) => m.i)).toEqual([1, 3]);
    expect(lines.some((l) => l.includes('too large for NOTIFY'))).toBe(true);
  });

  it('a node does not hear its own messages', async () => {
    const own: unknown[] = [];
    const c = new PgNotifyChannel<{ i: number }>(TEST_PG_URL!, channel, 'node-c', logger);
    await c.listen((m) => own.push(...m));
    received = [];
    c.send({ i: 42 });
    await waitFor('notifications', () => received.length >= 1, 5000);
    await new Promise((r) => setTimeout(r, 100));
    expect(received).toEqual([{ i: 42 }]);
    expect(own).toEqual([]);
    await c.close();
  });
});
