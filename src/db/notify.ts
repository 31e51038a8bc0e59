import pg from 'pg';
import type { Logger } from '../log';

/** PostgreSQL's NOTIFY payload limit is 8000 bytes; stay clear of it. */
const MAX_PAYLOAD_BYTES = 7800;

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

  /** Start listening; `handler` gets other nodes' messages, in the order they were sent. */
  async listen(handler: (msgs: T[]) => void): Promise<void> {
    this.handler = handler;
    await this.connect();
  }

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
    client.on('error', (err) => {
      this.logger.warn({ err: err.message }, 'LISTEN connection lost; reconnecting');
      this.reconnectSoon(client);
    });
    client.on('end', () => this.reconnectSoon(client));
    await client.connect();
    await client.query(`LISTEN ${this.channel}`);
    this.client = client;
  }

  private reconnectSoon(old: pg.Client): void {
    if (this.closed || this.client !== old) return;
    this.client = undefined;
    setTimeout(() => {
      if (!this.closed)
        this.connect().catch((err) => {
          this.logger.warn({ err: (err as Error).message }, 'LISTEN reconnect failed; retrying');
          this.reconnectSoon(old);
        });
    }, 500).unref();
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
        await this.sender.query('SELECT pg_notify($1, $2)', [this.channel, payload]);
      } catch (err) {
        this.logger.error({ err: (err as Error).message }, 'NOTIFY failed');
      }
    }
  }

  async close(): Promise<void> {
    this.closed = true;
    await this.flushing;
    if (this.pending.length) await this.flush();
    const c = this.client;
    this.client = undefined;
    await c?.end().catch(() => undefined);
    await this.sender.end();
  }
}
