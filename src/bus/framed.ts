import { randomBytes } from 'node:crypto';
import type { Logger } from '../log';
import { BUS_TOPICS, type Bus, type BusEngine, type BusHandler, type BusStatus, type BusTopic } from './bus';

/**
 * How an engine moves frames (strings) between nodes: every frame written reaches every node
 * connected, in the order written (the node's own frames included: they are dropped here).
 */
export interface Transport {
  readonly engine: BusEngine;
  /** The largest frame it carries, in bytes; larger messages are split into parts. */
  readonly maxFrameBytes: number;
  /** Whether frames are being received (readiness). */
  readonly connected: boolean;
  /**
   * Connects, and keeps reconnecting after a loss. `onFrame` gets each frame received; `onUp`
   * runs each time receiving (re)starts, the first time included. Resolves once connected, or
   * after the engine's first-connection wait (it keeps trying in the background).
   */
  start(onFrame: (frame: string) => void, onUp: () => void): Promise<void>;
  /** Writes frames in order; rejects if they could not be written (they are lost). */
  write(frames: string[]): Promise<void>;
  close(): Promise<void>;
}

/** One message inside a frame: topic, addressee (null: every node), the message. */
type Item = [topic: string, to: string | null, message: unknown];

/** A frame: a batch of whole messages (`m`), or one part (`i` of `c`, id `id`) of one message too large for a frame. */
interface Frame {
  n: string;
  m?: Item[];
  id?: string;
  i?: number;
  c?: number;
  p?: string;
}

/** A message whose parts stopped arriving is dropped after this long. */
const PARTIAL_TTL_MS = 30_000;
/** Room a frame's envelope takes beside its content (node id, part id, counters). */
const ENVELOPE_BYTES = 100;

/**
 * The bus on any {@link Transport}: messages of one tick go out in as few frames as fit the
 * engine's limit; a message larger than a frame is split into base64 parts sent in a row and
 * reassembled (so every topic can carry anything, on every engine). Frames are written one
 * batch after another, so a node's messages keep their order.
 */
export class FramedBus implements Bus {
  readonly nodeId = randomBytes(6).toString('hex');
  /** How every frame this node writes begins (`flush` and `split` put the node id first). */
  private readonly ownHead = `{"n":${JSON.stringify(this.nodeId)},`;
  readonly engine: BusEngine;
  private readonly handlers = new Map<string, BusHandler>();
  private readonly hooks: Array<() => void> = [];
  private pending: Item[] = [];
  private flushScheduled = false;
  private writing: Promise<void> = Promise.resolve();
  private closed = false;
  private writeFailing = false;
  private readonly partial = new Map<string, { parts: string[]; got: number; at: number }>();

  constructor(
    private readonly transport: Transport,
    private readonly logger: Logger,
  ) {
    this.engine = transport.engine;
  }

  subscribe(topic: BusTopic, handler: BusHandler): void {
    if (!BUS_TOPICS.includes(topic)) throw new Error(`bus: unknown topic ${JSON.stringify(topic)}`);
    this.handlers.set(topic, handler);
  }

  publish(topic: BusTopic, message: unknown): void {
    this.queue([topic, null, message]);
  }

  send(node: string, topic: BusTopic, message: unknown): void {
    if (node === this.nodeId) return;
    this.queue([topic, node, message]);
  }

  onReconnect(hook: () => void): void {
    this.hooks.push(hook);
  }

  status(): BusStatus {
    const connected = this.transport.connected;
    const channels: BusStatus['channels'] = {};
    for (const topic of this.handlers.keys()) channels[topic as BusTopic] = connected ? 'ok' : 'reconnecting';
    return { engine: this.engine, connected, channels };
  }

  start(): Promise<void> {
    return this.transport.start(
      (frame) => this.receive(frame),
      () => this.reconnected(),
    );
  }

  async close(): Promise<void> {
    if (this.closed) return;
    await this.writing;
    if (this.pending.length) await this.flush();
    this.closed = true;
    await this.transport.close();
  }

  private reconnected(): void {
    for (const hook of this.hooks) {
      try {
        hook();
      } catch (err) {
        this.logger.error({ err }, 'bus: a reconnect hook failed');
      }
    }
  }

  private queue(item: Item): void {
    if (this.closed) return;
    this.pending.push(item);
    if (this.flushScheduled) return;
    this.flushScheduled = true;
    setImmediate(() => {
      this.writing = this.writing.then(() => this.flush());
    });
  }

  /** Encodes what is pending into frames (each message once; batches cut by running size) and writes them. */
  private async flush(): Promise<void> {
    this.flushScheduled = false;
    const items = this.pending;
    this.pending = [];
    if (!items.length) return;
    const max = this.transport.maxFrameBytes;
    const head = `{"n":${JSON.stringify(this.nodeId)},"m":[`;
    const bare = Buffer.byteLength(head) + 2; // + ']}'
    const frames: string[] = [];
    let parts: string[] = [];
    let size = bare;
    const cut = () => {
      if (parts.length) frames.push(`${head}${parts.join(',')}]}`);
      parts = [];
      size = bare;
    };
    for (const item of items) {
      let text: string;
      try {
        text = JSON.stringify(item);
      } catch (err) {
        this.logger.error({ err: (err as Error).message, topic: item[0] }, 'bus: a message is not JSON; dropped');
        continue;
      }
      const bytes = Buffer.byteLength(text);
      if (bare + bytes > max) {
        cut();
        frames.push(...this.split(text, max));
        continue;
      }
      if (size + (parts.length ? 1 : 0) + bytes > max) cut();
      size += (parts.length ? 1 : 0) + bytes;
      parts.push(text);
    }
    cut();
    try {
      await this.transport.write(frames);
      if (this.writeFailing) this.logger.info({ engine: this.engine }, 'bus: sending again');
      this.writeFailing = false;
    } catch (err) {
      // Logged once per outage; the receivers' position checks repair what is lost.
      if (!this.writeFailing)
        this.logger.error({ err: (err as Error).message, engine: this.engine }, 'bus: sending failed; messages lost');
      this.writeFailing = true;
    }
  }

  /** One item's JSON as parts: base64 slices of its UTF-8 bytes, each in a frame under `max`. */
  private split(text: string, max: number): string[] {
    const bytes = Buffer.from(text, 'utf8');
    const partBytes = Math.floor(((max - ENVELOPE_BYTES - this.nodeId.length) * 3) / 4);
    const id = randomBytes(6).toString('hex');
    const c = Math.ceil(bytes.length / partBytes);
    const frames: string[] = [];
    for (let i = 0; i < c; i++) {
      const p = bytes.subarray(i * partBytes, (i + 1) * partBytes).toString('base64');
      frames.push(JSON.stringify({ n: this.nodeId, id, i, c, p } satisfies Frame));
    }
    return frames;
  }

  private receive(text: string): void {
    // This node's own frames come back too: known by their first bytes, dropped unparsed.
    if (text.startsWith(this.ownHead)) return;
    let frame: Frame;
    try {
      frame = JSON.parse(text) as Frame;
    } catch (err) {
      this.logger.warn({ err: (err as Error).message }, 'bus: ignored a malformed frame');
      return;
    }
    if (typeof frame?.n !== 'string' || frame.n === this.nodeId) return;
    if (Array.isArray(frame.m)) for (const item of frame.m) this.dispatch(item, frame.n);
    else this.part(frame);
  }

  private part(f: Frame): void {
    const { n: from, id, i, c, p } = f;
    if (typeof id !== 'string' || typeof p !== 'string' || !Number.isInteger(i) || !Number.isInteger(c)) return;
    if (i! < 0 || i! >= c! || c! > 1_000_000) return;
    const now = Date.now();
    for (const [k, v] of this.partial) if (now - v.at > PARTIAL_TTL_MS) this.partial.delete(k);
    const key = `${from}:${id}`;
    let entry = this.partial.get(key);
    if (entry === undefined) {
      entry = { parts: new Array<string>(c!), got: 0, at: now };
      this.partial.set(key, entry);
    }
    if (entry.parts[i!] === undefined) entry.got++;
    entry.parts[i!] = p;
    if (entry.got < c!) return;
    this.partial.delete(key);
    try {
      const item = JSON.parse(Buffer.concat(entry.parts.map((s) => Buffer.from(s, 'base64'))).toString('utf8'));
      this.dispatch(item as Item, from);
    } catch (err) {
      this.logger.warn({ err: (err as Error).message, from }, 'bus: a reassembled message is not JSON; dropped');
    }
  }

  private dispatch(item: Item, from: string): void {
    if (!Array.isArray(item) || typeof item[0] !== 'string') return;
    const [topic, to, message] = item;
    if (to !== null && to !== this.nodeId) return;
    const handler = this.handlers.get(topic);
    if (!handler) return;
    try {
      handler(message, from);
    } catch (err) {
      this.logger.error({ err, topic, from }, 'bus: a message handler failed');
    }
  }
}
