/**
 * The pyre bench server: src/realtime's RealtimeServer with one trivial channel on `room:*` that
 * accepts every join, mounted at /socket on a plain http server. A publish calls the server's
 * broadcast. When the harness runs several processes (NODE_COUNT > 1), broadcasts cross between
 * them through a PubSubAdapter over the IPC channel, relayed by the harness (standing in for the
 * broker a deployment would use).
 */
import { createServer } from 'node:http';
import { type PubSubAdapter, type PubSubMessage, RealtimeServer } from '../../src/realtime';
import { startControl } from '../lib/server-control';
import { benchSigner } from '../lib/token';

const port = Number(process.env.PORT ?? 4003);

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
