import { randomBytes } from 'node:crypto';
import type pg from 'pg';
import type { Logger } from '../log';
import type { BusMessage, ClusterBus } from '../realtime';
import { PgNotifyChannel } from './notify';

/** A message on the wire: whole (`m`), or one base64 part of a larger one (`p` of `n`, id `id`). */
interface Envelope {
  to: string;
  from: string;
  m?: BusMessage;
  id?: string;
  i?: number;
  n?: number;
  p?: string;
}

/** Raw bytes per part: 5400 bytes are 7200 base64 characters, under NOTIFY's 8000-byte limit with the envelope. */
const PART_BYTES = 5400;
/** A message whose parts stopped arriving is dropped after this long. */
const PARTIAL_TTL_MS = 30_000;

/**
 * The realtime layer's cluster bus on PostgreSQL LISTEN/NOTIFY: a node sends a message to
 * another by id (long-poll requests forwarded to the process that holds the session), or to all
 * the others (`'*'`). Every process listens on one channel and keeps what is addressed to it. A message over NOTIFY's
 * 8,000-byte limit is split into parts, sent in order, and reassembled.
 */
export class PgClusterBus implements ClusterBus {
  readonly nodeId = randomBytes(6).toString('hex');
  private readonly channel: PgNotifyChannel<Envelope>;
  private handler: ((message: BusMessage, from: string) => void) | undefined;
  private readonly partial = new Map<string, { parts: string[]; got: number; at: number }>();

  constructor(
    connection: string | pg.ClientConfig,
    channelName: string,
    private readonly logger: Logger,
  ) {
    this.channel = new PgNotifyChannel(connection, channelName, this.nodeId, logger);
  }

  async start(): Promise<void> {
    await this.channel.listen((msgs) => {
      for (const e of msgs)
        if ((e.to === this.nodeId || e.to === '*') && typeof e.from === 'string') this.receive(e, e.from);
    });
  }

  send(to: string, message: BusMessage): void {
    const text = JSON.stringify(message);
    if (Buffer.byteLength(text) <= PART_BYTES) {
      this.channel.send({ to, from: this.nodeId, m: message });
      return;
    }
    const bytes = Buffer.from(text, 'utf8');
    const id = randomBytes(6).toString('hex');
    const n = Math.ceil(bytes.length / PART_BYTES);
    for (let i = 0; i < n; i++)
      this.channel.send({
        to,
        from: this.nodeId,
        id,
        i,
        n,
        p: bytes.subarray(i * PART_BYTES, (i + 1) * PART_BYTES).toString('base64'),
      });
  }

  onMessage(handler: (message: BusMessage, from: string) => void): void {
    this.handler = handler;
  }

  private receive(e: Envelope, from: string): void {
    if (e.m !== undefined) {
      this.handler?.(e.m, from);
      return;
    }
    if (typeof e.id !== 'string' || typeof e.p !== 'string' || !Number.isInteger(e.i) || !Number.isInteger(e.n)) return;
    const now = Date.now();
    for (const [k, v] of this.partial) if (now - v.at > PARTIAL_TTL_MS) this.partial.delete(k);
    const key = `${from}:${e.id}`;
    let entry = this.partial.get(key);
    if (entry === undefined) {
      entry = { parts: new Array<string>(e.n!), got: 0, at: now };
      this.partial.set(key, entry);
    }
    if (entry.parts[e.i!] === undefined) entry.got++;
    entry.parts[e.i!] = e.p;
    if (entry.got < e.n!) return;
    this.partial.delete(key);
    try {
      const message = JSON.parse(Buffer.concat(entry.parts.map((p) => Buffer.from(p, 'base64'))).toString('utf8'));
      this.handler?.(message as BusMessage, from);
    } catch (err) {
      this.logger.warn(
        { err: (err as Error).message, from },
        'cluster bus: a reassembled message is not JSON; dropped',
      );
    }
  }

  close(): Promise<void> {
    return this.channel.close();
  }
}
