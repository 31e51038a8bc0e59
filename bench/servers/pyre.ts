/**
 * The pyre bench server: src/realtime's RealtimeServer with one trivial channel on `room:*` that
 * accepts every join, mounted at /socket on a plain http server. A publish calls the server's
 * broadcast. When the harness runs several processes (NODE_COUNT > 1), broadcasts cross between
 * them through a PubSubAdapter over the IPC channel, relayed by the harness (standing in for the
 * broker a deployment would use).
 */
import { createServer } from 'node:http';
import { type PubSubAdapter, type PubSubMessage, RealtimeServer } from '../../src/realtime';
import { WriteScheduler } from '../../src/realtime/websocket';
import { startControl } from '../lib/server-control';
import { benchSigner } from '../lib/token';

const port = Number(process.env.PORT ?? 4003);

/**
 * Experiment only (never on by default): BENCH_FLUSH_WINDOW_MS=N makes pyre's per-tick write
 * flush wait N ms instead of the end of the tick, to measure what coalescing consecutive
 * broadcasts into one write per socket would save. It patches WriteScheduler.add in this process.
 */
const flushWindow = Number(process.env.BENCH_FLUSH_WINDOW_MS ?? 0);
if (flushWindow > 0) {
  type Sched = { dirty: unknown[]; scheduled: boolean; flushAll: () => void };
  (WriteScheduler.prototype as unknown as { add: (t: unknown) => void }).add = function (this: Sched, t: unknown): void {
    this.dirty.push(t);
    if (!this.scheduled) {
      this.scheduled = true;
      setTimeout(this.flushAll, flushWindow);
    }
  };
}
const multi = Number(process.env.NODE_COUNT ?? 1) > 1;

class IpcPubSub implements PubSubAdapter {
  private handler: ((m: PubSubMessage) => void) | null = null;
  constructor() {
    process.on('message', (m: unknown) => {
      const msg = m as { pubsub?: PubSubMessage };
      if (msg && msg.pubsub && this.handler) this.handler(msg.pubsub);
    });
  }
  publish(message: PubSubMessage): void {
    process.send?.({ pubsub: message });
  }
  onMessage(handler: (m: PubSubMessage) => void): void {
    this.handler = handler;
  }
  close(): void {}
}

const signer = benchSigner();
/** BENCH_MAX_FLUSH_DELAY_MS: pyre's maxFlushDelayMs option (default 10; 0 = always flush at end of tick). */
const maxFlushDelay = process.env.BENCH_MAX_FLUSH_DELAY_MS;
const realtime = new RealtimeServer({
  ...(maxFlushDelay !== undefined ? { maxFlushDelayMs: Number(maxFlushDelay) } : {}),
  checkOrigin: false,
  pubsub: multi ? new IpcPubSub() : undefined,
  connect: signer
    ? (params) => {
        try {
          return { assigns: { user: signer.verify(typeof params.token === 'string' ? params.token : null).sub } };
        } catch {
          return { error: true };
        }
      }
    : undefined,
});
realtime.channel('room:*', {
  join: () => ({ status: 'ok' }),
});

const http = createServer((_req, res) => {
  res.statusCode = 404;
  res.end();
});
realtime.attach(http);
http.listen({ host: '127.0.0.1', port, backlog: 4096 }, () => {
  startControl(
    {
      publish(topic, event, payload) {
        realtime.broadcast(topic, event, payload);
      },
      connections: () => realtime.stats().sockets,
    },
    port,
  );
});
