import pg from 'pg';
import type { Logger } from '../log';
import type { Transport } from './framed';

/** PostgreSQL's NOTIFY payload limit is 8000 bytes; stay clear of it. */
export const NOTIFY_MAX_BYTES = 7800;
/** LISTEN reconnects: the first try after 250 ms, then doubling up to 2 s between tries. */
const RECONNECT_MIN_MS = 250;
const RECONNECT_MAX_MS = 2000;

/**
 * The bus on the database's LISTEN/NOTIFY: one LISTEN connection per process for every topic
 * (one channel), and one connection that sends, NOTIFY after the commit it announces (never
 * inside a write transaction, where NOTIFY serialises commits). Frames go out one after another
 * on that connection, so they keep their order.
 */
export class PgTransport implements Transport {
  readonly engine = 'postgres' as const;
  readonly maxFrameBytes = NOTIFY_MAX_BYTES;
  private client: pg.Client | undefined;
  private readonly sender: pg.Pool;
  private closed = false;
  private onFrame: ((frame: string) => void) | undefined;
  private onUp: (() => void) | undefined;
  private reconnectTimer: NodeJS.Timeout | undefined;
  private reconnectDelayMs = RECONNECT_MIN_MS;

  constructor(
    /** A connection string or pg connection settings (knex's parsed `connection`). */
    private readonly connection: string | pg.ClientConfig,
    /** The NOTIFY channel (an identifier: letters, digits, underscores). */
    readonly channel: string,
    private readonly logger: Logger,
  ) {
    if (!/^[a-z_][a-z0-9_]{0,62}$/.test(channel)) throw new Error(`bad NOTIFY channel name ${channel}`);
    this.sender = new pg.Pool({ ...this.clientConfig(), max: 1 });
    this.sender.on('error', (err) => this.logger.warn({ err: err.message }, 'bus: NOTIFY connection error'));
  }

  private clientConfig(): pg.ClientConfig {
    const c = this.connection;
    return typeof c === 'string'
      ? { connectionString: c }
      : { ...c, port: c.port === undefined ? undefined : Number(c.port) };
  }

  get connected(): boolean {
    return this.client !== undefined;
  }

  async start(onFrame: (frame: string) => void, onUp: () => void): Promise<void> {
    this.onFrame = onFrame;
    this.onUp = onUp;
    await this.connect();
  }

  private async connect(): Promise<void> {
    const client = new pg.Client(this.clientConfig());
    client.on('notification', (n) => {
      if (n.channel === this.channel && n.payload) this.onFrame?.(n.payload);
    });
    // Always listened to: an 'error' with no listener would end the process.
    client.on('error', (err) => this.lost(client, err.message));
    client.on('end', () => this.lost(client, 'connection ended'));
    try {
      await client.connect();
      await client.query(`LISTEN ${this.channel}`);
    } catch (err) {
      client.end().catch(() => undefined);
      throw err;
    }
    if (this.closed) {
      await client.end().catch(() => undefined);
      return;
    }
    this.client = client;
    this.reconnectDelayMs = RECONNECT_MIN_MS;
    this.onUp?.();
  }

  /** The LISTEN connection `client` failed or ended: drop it and reconnect (once per loss). */
  private lost(client: pg.Client, why: string): void {
    if (this.client !== client) return; // a connection that never got to listen, or already replaced
    this.client = undefined;
    client.end().catch(() => undefined);
    if (this.closed) return;
    this.logger.warn({ channel: this.channel, err: why }, 'bus: LISTEN connection lost; reconnecting');
    this.scheduleReconnect();
  }

  /** Retry until LISTEN is back, with a capped backoff; one timer at a time. */
  private scheduleReconnect(): void {
    if (this.closed || this.reconnectTimer) return;
    const delay = this.reconnectDelayMs;
    this.reconnectDelayMs = Math.min(RECONNECT_MAX_MS, this.reconnectDelayMs * 2);
    this.reconnectTimer = setTimeout(() => {
      this.reconnectTimer = undefined;
      if (this.closed || this.client) return;
      this.connect().then(
        () => {
          if (this.client) this.logger.info({ channel: this.channel }, 'bus: LISTEN connection re-established');
        },
        (err) => {
          this.logger.warn(
            { channel: this.channel, err: (err as Error).message },
            'bus: LISTEN reconnect failed; retrying',
          );
          this.scheduleReconnect();
        },
      );
    }, delay);
    this.reconnectTimer.unref();
  }

  async write(frames: string[]): Promise<void> {
    // No fsync for a notification (it is not kept across a crash anyway): its commit, and the
    // cluster-wide lock every NOTIFY holds until its commit ends, are not held for the disk.
    for (const payload of frames) {
      await this.sender.query("SELECT set_config('synchronous_commit', 'off', true), pg_notify($1, $2)", [
        this.channel,
        payload,
      ]);
    }
  }

  async close(): Promise<void> {
    this.closed = true;
    clearTimeout(this.reconnectTimer);
    const c = this.client;
    this.client = undefined;
    await c?.end().catch(() => undefined);
    await this.sender.end();
  }
}
