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
    return typeof c === 'string' ? { connectionString: c } : { ...c, port: c.port === undefined ? undefined : Number(c.port) };
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
      if (!this.closed) this.connect().catch((err) => {
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
      setImmediate(() => void this.flush());
    }
  }

  private async flush(): Promise<void> {
    this.flushScheduled = false;
    const msgs = this.pending;
    this.pending = [];
    const batches: string[] = [];
    let current: T[] = [];
    const encode = (m: T[]) => JSON.stringify({ n: this.nodeId, m });
    for (const m of msgs) {
      current.push(m);
      if (Buffer.byteLength(encode(current)) > MAX_PAYLOAD_BYTES) {
        current.pop();
        if (current.length) batches.push(encode(current));
        current = [m];
        if (Buffer.byteLength(encode(current)) > MAX_PAYLOAD_BYTES) {
          this.logger.error({ bytes: Buffer.byteLength(encode(current)) }, 'a notification is too large for NOTIFY; dropped');
          current = [];
        }
      }
    }
    if (current.length) batches.push(encode(current));
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
    if (this.flushScheduled || this.pending.length) await this.flush();
    const c = this.client;
    this.client = undefined;
    await c?.end().catch(() => undefined);
    await this.sender.end();
  }
}
