/**
 * In-process topic fan-out plus an adapter seam for other nodes.
 *
 * A broadcast becomes one {@link Fanout}; each serializer encodes it at most once and every
 * subscriber that uses that serializer gets the very same bytes.
 */
import { randomBytes } from 'node:crypto';
import type { BroadcastMessage, Payload } from './message';
import { assertPushPayload, isBinaryPayload, toBuffer } from './message';
import type { EncodedFrame, Serializer } from './serializer';

/** Something that receives broadcasts on a topic: a joined channel, a socket-id listener, app code. */
export interface Subscriber {
  deliver(fanout: Fanout): void;
}

/**
 * One broadcast, with per-serializer encode caches. `wsFrames` holds the complete WebSocket frame
 * (header + data) so the WebSocket transport writes a ready buffer to each socket.
 */
export class Fanout {
  readonly message: BroadcastMessage;
  /** Subscriber to skip (broadcast_from). */
  readonly from: Subscriber | null;
  private readonly encoded: (EncodedFrame | Error | undefined)[] = [undefined, undefined];
  /** Filled by the WebSocket transport: index = serializer.index. */
  readonly wsFrames: (Buffer | undefined)[] = [undefined, undefined];

  constructor(message: BroadcastMessage, from: Subscriber | null) {
    this.message = message;
    this.from = from;
  }

  /** The frame for `serializer`, encoded on first use; throws if this serializer cannot carry it. */
  encode(serializer: Serializer): EncodedFrame {
    let e = this.encoded[serializer.index];
    if (e === undefined) {
      try {
        e = serializer.encode(this.message);
      } catch (err) {
        e = err instanceof Error ? err : new Error(String(err));
      }
      this.encoded[serializer.index] = e;
    }
    if (e instanceof Error) throw e;
    return e;
  }
}

/** The JSON-safe form a broadcast takes between nodes. */
export interface PubSubMessage {
  topic: string;
  event: string;
  /** JSON payload, or base64 text when `binary` is true. */
  payload: unknown;
  binary?: boolean;
  /** The publishing node's id, so adapters that echo to self (PostgreSQL NOTIFY) can be handled. */
  node: string;
}

/**
 * Carries broadcasts to and from other nodes. Local subscribers are always served in-process by
 * {@link PubSub}; an adapter only moves messages between nodes.
 */
export interface PubSubAdapter {
  /** Send to other nodes. Errors are logged by the caller, never thrown to broadcasters. */
  publish(message: PubSubMessage): void | Promise<void>;
  /** Register the single handler for messages from other nodes (own messages are filtered by `node`). */
  onMessage(handler: (message: PubSubMessage) => void): void;
  /** Optional hints: the first local subscriber of a topic appeared / the last one left. */
  subscribe?(topic: string): void;
  unsubscribe?(topic: string): void;
  close(): void | Promise<void>;
}

/** The default adapter: a single node, nothing leaves the process. */
export class LocalPubSubAdapter implements PubSubAdapter {
  publish(): void {}
  onMessage(): void {}
  close(): void {}
}

export class PubSub {
  readonly nodeId: string;
  private readonly topics = new Map<string, Set<Subscriber> | Subscriber>();
  private readonly adapter: PubSubAdapter;
  private readonly onAdapterError: (err: unknown) => void;
  /** Incremented per delivered frame by the owner (stats). */
  delivered = 0;

  constructor(
    adapter: PubSubAdapter = new LocalPubSubAdapter(),
    onAdapterError: (err: unknown) => void = () => {},
    nodeId?: string,
  ) {
    this.adapter = adapter;
    this.onAdapterError = onAdapterError;
    this.nodeId = nodeId ?? randomBytes(8).toString('hex');
    adapter.onMessage((m) => this.fromRemote(m));
  }

  /** Subscribes `sub` to `topic` (idempotent). */
  subscribe(topic: string, sub: Subscriber): void {
    const cur = this.topics.get(topic);
    if (cur === undefined) {
      // A lone subscriber is stored bare: most task topics have exactly one.
      this.topics.set(topic, sub);
      this.adapter.subscribe?.(topic);
    } else if (cur instanceof Set) {
      cur.add(sub);
    } else if (cur !== sub) {
      this.topics.set(topic, new Set([cur, sub]));
    }
  }

  unsubscribe(topic: string, sub: Subscriber): void {
    const cur = this.topics.get(topic);
    if (cur === undefined) return;
    if (cur instanceof Set) {
      cur.delete(sub);
      if (cur.size === 1) this.topics.set(topic, cur.values().next().value!);
      else if (cur.size === 0) this.dropTopic(topic);
    } else if (cur === sub) {
      this.dropTopic(topic);
    }
  }

  private dropTopic(topic: string): void {
    this.topics.delete(topic);
    this.adapter.unsubscribe?.(topic);
  }

  /** Number of local subscribers of `topic`. */
  subscriberCount(topic: string): number {
    const cur = this.topics.get(topic);
    return cur === undefined ? 0 : cur instanceof Set ? cur.size : 1;
  }

  /** Broadcasts to local subscribers and, through the adapter, to other nodes. */
  broadcast(topic: string, event: string, payload: Payload, from: Subscriber | null = null): void {
    assertPushPayload(payload, 'broadcast');
    this.localBroadcast(topic, event, payload, from);
    const binary = isBinaryPayload(payload);
    let msg: PubSubMessage;
    try {
      msg = { topic, event, payload: binary ? toBuffer(payload).toString('base64') : payload, node: this.nodeId };
      if (binary) msg.binary = true;
      const r = this.adapter.publish(msg);
      if (r && typeof (r as Promise<void>).catch === 'function') (r as Promise<void>).catch(this.onAdapterError);
    } catch (err) {
      this.onAdapterError(err);
    }
  }

  /** Delivers to subscribers in this process only. */
  localBroadcast(topic: string, event: string, payload: Payload, from: Subscriber | null = null): void {
    const cur = this.topics.get(topic);
    if (cur === undefined) return;
    const fanout = new Fanout({ kind: 'broadcast', topic, event, payload }, from);
    if (cur instanceof Set) {
      // Set iteration tolerates subscribers leaving while we iterate (a slow client closed mid-fan-out).
      for (const sub of cur) if (sub !== from) sub.deliver(fanout);
    } else if (cur !== from) {
      cur.deliver(fanout);
    }
  }

  private fromRemote(m: PubSubMessage): void {
    if (!m || m.node === this.nodeId || typeof m.topic !== 'string' || typeof m.event !== 'string') return;
    const payload = m.binary && typeof m.payload === 'string' ? Buffer.from(m.payload, 'base64') : m.payload;
    this.localBroadcast(m.topic, m.event, payload, null);
  }

  close(): void | Promise<void> {
    return this.adapter.close();
  }
}
