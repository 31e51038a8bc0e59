import pg from 'pg';
import type { Logger } from '../log';

/** PostgreSQL's NOTIFY payload limit is 8000 bytes; stay clear of it. */
const MAX_PAYLOAD_BYTES = 7800;
/** LISTEN reconnects: the first try after 250 ms, then doubling up to 2 s between tries. */
const RECONNECT_MIN_MS = 250;
const RECONNECT_MAX_MS = 2000;

/**
 * A LISTEN/NOTIFY channel on one PostgreSQL database: `send` batches small JSON
 * messages per tick into as few NOTIFYs as fit the 8,000-byte limit, sent after
 * the commit that they announce (never inside a write transaction, where NOTIFY
 * serializes commits); `listen` keeps one dedicated connection, reconnecting
 * after a drop. Messages from this node are not handed back to it.
 */
export class PgNotifyChannel<T> {
  private client: pg.Client | undefined;
  private pending: T[] = [];
  private flushScheduled = false;
  /** The flush in progress: flushes run one after another, so notifications keep the order of `send`. */
  private flushing: Promise<void> = Promise.resolve();
  private closed = false;
  private handler: ((msgs: T[]) => void) | undefined;
  private readonly sender: pg.Pool;

  constructor(
    /** A connection string or pg connection settings (knex's parsed `connection`). */
    private readonly connection: string | pg.ClientConfig,
    /** The NOTIFY channel name (an identifier: letters, digits, underscores). */
    readonly channel: string,
    readonly nodeId: string,
    private readonly logger: Logger,
  ) {
    if (!/^[a-z_][a-z0-9_]{0,62}$/.test(channel)) throw new Error(`bad NOTIFY channel name ${channel}`);
    this.sender = new pg.Pool({ ...this.clientConfig(), max: 2 });
    this.sender.on('error', (err) => this.logger.warn({ err: err.message }, 'notify sender connection error'));
  }

  private clientConfig(): pg.ClientConfig {
    const c = this.connection;
    return typeof c === 'string'
      ? { connectionString: c }
      : { ...c, port: c.port === undefined ? undefined : Number(c.port) };
  }

  /**
   * Start listening; `handler` gets other nodes' messages, in the order they were sent.
   * `onListening` runs each time LISTEN is (re)established, the first time included: NOTIFYs
   * sent while the connection was down are never read again, so the caller re-reads what it may
   * have missed (the position check).
   */
  async listen(handler: (msgs: T[]) => void, onListening?: () => void): Promise<void> {
    this.handler = handler;
    this.onListening = onListening;
    await this.connect();
  }

  /** Whether the LISTEN connection is up (readiness reports it). */
  get listening(): boolean {
    return this.client !== undefined;
  }

  private onListening: (() => void) | undefined;
  private reconnectTimer: NodeJS.Timeout | undefined;
  private reconnectDelayMs = RECONNECT_MIN_MS;

  private async connect(): Promise<void> {
    const client = new pg.Client(this.clientConfig());
    client.on('notification', (n) => {
      if (n.channel !== this.channel || !n.payload) return;
      try {
        const batch = JSON.parse(n.payload) as { n: string; m: T[] };
        if (batch.n !== this.nodeId) this.handler?.(batch.m);
      } catch (err) {
        this.logger.warn({ err: (err as Error).message }, 'ignored a malformed notification');
      }
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
    try {
      this.onListening?.();
    } catch (err) {
      this.logger.error({ err }, 'LISTEN re-established: the catch-up hook failed');
    }
  }

  /** The LISTEN connection `client` failed or ended: drop it and reconnect (once per loss). */
  private lost(client: pg.Client, why: string): void {
    if (this.client !== client) return; // a connection that never got to listen, or already replaced
    this.client = undefined;
    client.end().catch(() => undefined);
    if (this.closed) return;
    this.logger.warn({ channel: this.channel, err: why }, 'LISTEN connection lost; reconnecting');
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
          if (this.client) this.logger.info({ channel: this.channel }, 'LISTEN connection re-established');
        },
        (err) => {
          this.logger.warn({ channel: this.channel, err: (err as Error).message }, 'LISTEN reconnect failed; retrying');
          this.scheduleReconnect();
        },
      );
    }, delay);
    this.reconnectTimer.unref();
  }

  /** Queue a message; all messages of this tick go out together. */
  send(msg: T): void {
    if (this.closed) return;
    this.pending.push(msg);
    if (!this.flushScheduled) {
      this.flushScheduled = true;
      setImmediate(() => {
        this.flushing = this.flushing.then(() => this.flush());
      });
    }
  }

  private async flush(): Promise<void> {
    this.flushScheduled = false;
    const msgs = this.pending;
    this.pending = [];
    // Each message is encoded once; batches are cut by running size (linear, not quadratic).
    const head = `{"n":${JSON.stringify(this.nodeId)},"m":[`;
    const bare = Buffer.byteLength(head) + 2; // + ']}'
    const batches: string[] = [];
    let parts: string[] = [];
    let size = bare;
    for (const m of msgs) {
      const text = JSON.stringify(m);
      const bytes = Buffer.byteLength(text);
      if (bare + bytes > MAX_PAYLOAD_BYTES) {
        this.logger.error({ bytes: bare + bytes }, 'a notification is too large for NOTIFY; dropped');
        continue;
      }
      const comma = parts.length ? 1 : 0;
      if (size + comma + bytes > MAX_PAYLOAD_BYTES) {
        batches.push(`${head}${parts.join(',')}]}`);
        parts = [];
        size = bare;
      }
      size += (parts.length ? 1 : 0) + bytes;
      parts.push(text);
    }
    if (parts.length) batches.push(`${head}${parts.join(',')}]}`);
    for (const payload of batches) {
      try {
        // No fsync for a notification (it is not kept across a crash anyway): its commit, and the
        // cluster-wide lock every NOTIFY holds until its commit ends, are not held for the disk.
        await this.sender.query("SELECT set_config('synchronous_commit', 'off', true), pg_notify($1, $2)", [
          this.channel,
          payload,
        ]);
      } catch (err) {
        this.logger.error({ err: (err as Error).message }, 'NOTIFY failed');
      }
    }
  }

  async close(): Promise<void> {
    this.closed = true;
    clearTimeout(this.reconnectTimer);
    await this.flushing;
    if (this.pending.length) await this.flush();
    const c = this.client;
    this.client = undefined;
    await c?.end().catch(() => undefined);
    await this.sender.end();
  }
}
