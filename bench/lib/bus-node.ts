/**
 * One node of bench (j): a process with the gateway's cluster bus (src/bus) on the engine the
 * parent names (BENCH_BUS_ENGINE=postgres|redis, BENCH_BUS_URL, BENCH_BUS_CHANNEL). It publishes
 * task-event refs at a paced rate (`publish`), or records publish→receive latency of the refs it
 * hears (`report`). The timestamp travels in the ref (process.hrtime: one clock on the machine).
 */
import type { Bus } from '../../src/bus/bus';
import { FramedBus } from '../../src/bus/framed';
import { PgTransport } from '../../src/bus/postgres';
import { RedisTransport } from '../../src/bus/redis';
import { createLogger } from '../../src/log';
import { Hist } from './hist';
import { serveRpc } from './ipc';

const nowMs = () => Number(process.hrtime.bigint()) / 1e6;

async function main(): Promise<void> {
  const logger = createLogger({ level: 'warn' });
  const engine = process.env.BENCH_BUS_ENGINE;
  const url = process.env.BENCH_BUS_URL!;
  const channel = process.env.BENCH_BUS_CHANNEL!;
  const transport =
    engine === 'redis' ? new RedisTransport(url, channel, logger) : new PgTransport(url, channel, logger);
  const bus: Bus = new FramedBus(transport, logger);
  const hist = new Hist();
  let received = 0;
  bus.subscribe('events', (m) => {
    const ref = m as [string, string, number, number, number];
    received++;
    hist.record(nowMs() - ref[4]);
  });
  await bus.start();
  serveRpc({
    reset: () => {
      hist.reset();
      received = 0;
      return { cpu: process.cpuUsage() };
    },
    report: () => ({ received, hist: hist.toJSON(), cpu: process.cpuUsage() }),
    /** `rate` refs a second for `seconds`, sent every 10 ms (each tick's refs leave in one frame, as the relay's do). */
    publish: async ({ rate, seconds }: { rate: number; seconds: number }) => {
      const start = nowMs();
      let sent = 0;
      const total = Math.round(rate * seconds);
      while (sent < total) {
        const due = Math.min(total, Math.floor(((nowMs() - start) / 1000) * rate));
        for (; sent < due; sent++) bus.publish('events', [`task-${sent % 1000}`, 'user', sent, sent, nowMs()]);
        await new Promise((r) => setTimeout(r, 10));
      }
      return { sent, ms: nowMs() - start };
    },
    close: async () => {
      await bus.close();
      setImmediate(() => process.exit(0));
      return {};
    },
  });
  process.send!({ ready: true });
}

void main();
