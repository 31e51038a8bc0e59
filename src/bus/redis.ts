import { createClient } from 'redis';
import type { Logger } from '../log';
import type { Transport } from './framed';

/** Reconnect tries: 100 ms, then doubling up to 1 s apart, for ever. */
const RECONNECT_MIN_MS = 100;
const RECONNECT_MAX_MS = 1000;
/** How long `start` waits for a Redis that does not answer before the gateway goes on without it. */
const FIRST_CONNECT_WAIT_MS = 10_000;

/** Redis's limit is 512 MB a message; frames are kept smaller so one large message does not hold up the others for long. */
const REDIS_MAX_FRAME_BYTES = 1024 * 1024;

/**
 * The bus on Redis Pub/Sub (the official `redis` client): one connection subscribed to the
 * cluster's channel, one that publishes. Redis delivers a connection's PUBLISHes to each
 * subscriber in order. Both reconnect by themselves; the subscriber resubscribes before it
 * reports ready, and `onUp` runs then. While Redis is away, publishing fails at once (no offline
 * queue that would grow without bound): those messages are lost, and the receivers' position
 * checks repair them.
 */
export class RedisTransport implements Transport {
  readonly engine = 'redis' as const;
  readonly maxFrameBytes = REDIS_MAX_FRAME_BYTES;
  private readonly pub: ReturnType<typeof createClient>;
  private readonly sub: ReturnType<typeof createClient>;
  private down = false;
  private closed = false;

  constructor(
    url: string,
    /** The Pub/Sub channel: the configured prefix and the cluster's name. */
    readonly channel: string,
    private readonly logger: Logger,
  ) {
    const reconnectStrategy = (retries: number) => Math.min(RECONNECT_MAX_MS, RECONNECT_MIN_MS * 2 ** retries);
    // Named after the channel (CLIENT LIST shows whose connections they are).
    this.pub = createClient({
      url,
      name: `pyre-bus:${channel}`,
      disableOfflineQueue: true,
      socket: { reconnectStrategy },
    });
    this.sub = this.pub.duplicate();
    // Always listened to: an 'error' with no listener would end the process. Said once per outage.
    for (const c of [this.pub, this.sub]) c.on('error', (err: Error) => this.failed(err));
  }

  get connected(): boolean {
    return this.sub.isReady;
  }

  private failed(err: Error): void {
    if (this.closed || this.down) return;
    this.down = true;
    this.logger.warn({ err: err.message, channel: this.channel }, 'bus: Redis unreachable; reconnecting');
  }

  async start(onFrame: (frame: string) => void, onUp: () => void): Promise<void> {
    let subscribed = false;
    // After a reconnect the client resubscribes before it says 'ready': the hook runs subscribed.
    this.sub.on('ready', () => {
      if (!subscribed) return;
      if (this.down) this.logger.info({ channel: this.channel }, 'bus: Redis connection re-established');
      this.down = false;
      onUp();
    });
    const connected = (async () => {
      await Promise.all([this.pub.connect(), this.sub.connect()]);
      await this.sub.subscribe(this.channel, onFrame);
      subscribed = true;
      this.down = false;
      onUp();
    })();
    let timer: NodeJS.Timeout | undefined;
    const up = await Promise.race([
      connected.then(
        () => true,
        (err: Error) => {
          this.logger.error({ err: err.message, channel: this.channel }, 'bus: could not subscribe on Redis');
          return false;
        },
      ),
      new Promise<boolean>((r) => {
        timer = setTimeout(() => r(false), FIRST_CONNECT_WAIT_MS);
      }),
    ]).finally(() => clearTimeout(timer));
    if (!up && !this.closed)
      this.logger.error({ channel: this.channel }, 'bus: Redis does not answer; going on, not ready, reconnecting');
  }

  async write(frames: string[]): Promise<void> {
    if (!this.pub.isReady) throw new Error('Redis is not connected');
    // Sent in one go: node-redis pipelines the commands of a tick on its one connection, in order.
    await Promise.all(frames.map((f) => this.pub.publish(this.channel, f)));
  }

  async close(): Promise<void> {
    this.closed = true;
    for (const c of [this.pub, this.sub]) {
      try {
        if (c.isReady) await c.close();
        else if (c.isOpen) c.destroy();
      } catch {
        /* closing anyway */
      }
    }
  }
}
