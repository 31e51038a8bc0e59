/**
 * The long-poll cluster bus on PostgreSQL NOTIFY: point-to-point, in order, and messages far over
 * NOTIFY's 8,000-byte limit arrive whole.
 */
import { PgClusterBus } from '../../src/db/pg-cluster-bus';
import { silentLogger } from '../../src/log';
import type { BusMessage } from '../../src/realtime';
import { TEST_PG_URL } from '../helpers/db';
import { waitFor } from '../channels/helpers';

(TEST_PG_URL ? describe : describe.skip)('PgClusterBus', () => {
  it('delivers to the addressed node only, in order, large messages whole', async () => {
    const channel = `pyre_bus_test_${process.pid}`;
    const [a, b, c] = [0, 1, 2].map(() => new PgClusterBus(TEST_PG_URL!, channel, silentLogger()));
    const got: { node: string; from: string; m: BusMessage }[] = [];
    for (const bus of [a!, b!, c!]) bus.onMessage((m, from) => got.push({ node: bus.nodeId, from, m }));
    try {
      await Promise.all([a!.start(), b!.start(), c!.start()]);
      const big = 'é'.repeat(30_000) + '"\\'.repeat(5000); // ~70 KB of UTF-8 that JSON has to escape
      a!.send(b!.nodeId, { n: 1 });
      a!.send(b!.nodeId, { n: 2, big });
      a!.send(b!.nodeId, { n: 3 });
      c!.send(b!.nodeId, { n: 4 });
      await waitFor('four messages', () => got.length >= 4, 10_000);
      await new Promise((r) => setTimeout(r, 200));
      expect(got.every((g) => g.node === b!.nodeId)).toBe(true);
      const fromA = got.filter((g) => g.from === a!.nodeId).map((g) => g.m);
      expect(fromA).toEqual([{ n: 1 }, { n: 2, big }, { n: 3 }]);
      expect(got.filter((g) => g.from === c!.nodeId).map((g) => g.m)).toEqual([{ n: 4 }]);
    } finally {
      await Promise.all([a!.close(), b!.close(), c!.close()]);
    }
  }, 30_000);
});
