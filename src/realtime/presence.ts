/**
 * Presence (Phoenix.Presence): who is on a topic, across every node of the pubsub. Tracks entries
 * per channel; sends `presence_diff` broadcasts and builds the `presence_state` push. Entries are
 * always `{ key: { metas: [ {...meta, phx_ref} ] } }`, the only shape SwiftPhoenixClient 5.3.4
 * accepts.
 *
 * Across nodes (like phoenix_pubsub's tracker, much simplified): each node owns its own entries
 * and sends every change of them through the pubsub adapter as a numbered diff; the others keep a
 * replica per node, merged into `presence_state` and relayed to their clients as `presence_diff`.
 * A node's heartbeat (every `heartbeatMs`) carries its diff number: a replica that missed one asks
 * for the node's full state. A node not heard from for `expireMs` is gone (killed, cut off): its
 * entries leave, so a dead node's presences disappear within `expireMs + heartbeatMs`.
 */
import { randomBytes } from 'node:crypto';
import type { ChannelSocket } from './channel';
import type { Fanout, PubSub, Subscriber } from './pubsub';

export type PresenceMeta = Record<string, unknown> & { phx_ref: string; phx_ref_prev?: string };
export type PresenceState = Record<string, { metas: PresenceMeta[] }>;
export interface PresenceDiff {
  joins: PresenceState;
  leaves: PresenceState;
}

interface Entry {
  owner: ChannelSocket;
  meta: PresenceMeta;
}

const NODE_HASH = randomBytes(2);
let counter = 0;

/**
 * A phx_ref like phoenix_pubsub's: url-safe base64 of 12 bytes
 * (64-bit ns timestamp, 16-bit node/process hash, 16-bit unique counter) → 16 characters.
 */
export function presenceRef(): string {
  const b = Buffer.allocUnsafe(12);
  const ns = BigInt(Date.now()) * 1_000_000n + (process.hrtime.bigint() % 1_000_000n);
  b.writeBigUInt64BE(ns, 0);
  NODE_HASH.copy(b, 8);
  b.writeUInt16BE((counter = (counter + 1) & 0xffff), 10);
  return b.toString('base64url');
}

/** A state keyed by presence keys, which may come from clients: no prototype, so `__proto__` is a plain key. */
function emptyState(): PresenceState {
  return Object.create(null) as PresenceState;
}

export interface PresenceOptions {
  /** Event names (defaults as phoenix.js and Swift expect). */
  stateEvent?: string;
  diffEvent?: string;
  /** Names the tracker on the pubsub (several trackers on one server need different names). */
  name?: string;
  /** How often this node tells the others it is alive, ms. */
  heartbeatMs?: number;
  /** A node not heard from for this long is gone and its entries leave, ms. */
  expireMs?: number;
}

type Metas = Map<string, PresenceMeta[]>;

/** What trackers on different nodes say to each other (all through the pubsub adapter). */
type SyncMessage =
  | { type: 'diff'; node: string; seq: number; topic: string; joins: PresenceState; leaves: PresenceState }
  | { type: 'hb'; node: string; seq: number }
  | { type: 'req'; node: string; to: string }
  | {
      type: 'state';
      node: string;
      seq: number;
      sid: string;
      part: number;
      parts: number;
      topics: Record<string, PresenceState>;
    }
  | { type: 'bye'; node: string };

/** Another node's entries, as it last told us. */
interface Replica {
  /** The number of its last diff applied (-1: not synced yet, waiting for its state). */
  seq: number;
  lastSeen: number;
  requestedAt: number;
  topics: Map<string, Metas>;
  /** A state transfer in progress: its parts so far. */
  incoming?: { sid: string; seq: number; parts: Array<Record<string, PresenceState> | undefined>; got: number };
}

/** A state chunk stays well under PostgreSQL NOTIFY's 8,000 bytes (the adapter adds its envelope). */
const STATE_CHUNK_BYTES = 6000;

export class Presence {
  private readonly pubsub: PubSub;
  private readonly topics = new Map<string, Map<string, Entry[]>>();
  private readonly owners = new Map<ChannelSocket, Set<string>>();
  private readonly replicas = new Map<string, Replica>();
  private readonly syncTopic: string;
  private readonly node: string;
  private readonly subscriber: Subscriber;
  private readonly timer: NodeJS.Timeout;
  private seq = 0;
  private closed = false;
  readonly stateEvent: string;
  readonly diffEvent: string;
  readonly heartbeatMs: number;
  readonly expireMs: number;

  /** `server` is a RealtimeServer (or anything with its pubsub). Call `close()` when done. */
  constructor(server: { pubsub: PubSub }, opts: PresenceOptions = {}) {
    this.pubsub = server.pubsub;
    this.stateEvent = opts.stateEvent ?? 'presence_state';
    this.diffEvent = opts.diffEvent ?? 'presence_diff';
    this.heartbeatMs = opts.heartbeatMs ?? 1000;
    this.expireMs = opts.expireMs ?? 5000;
    if (!(this.expireMs > this.heartbeatMs)) throw new Error('presence expireMs must be longer than heartbeatMs');
    this.syncTopic = `phx_presence:${opts.name ?? 'presence'}`;
    // Unique per tracker instance: a restarted process is a new node, whose entries start empty.
    this.node = `${this.pubsub.nodeId}.${randomBytes(4).toString('hex')}`;
    this.subscriber = { deliver: (f: Fanout) => this.fromNode(f.message.payload as SyncMessage) };
    this.pubsub.subscribe(this.syncTopic, this.subscriber);
    this.timer = setInterval(() => this.tick(), this.heartbeatMs);
    this.timer.unref();
    // Whoever is already up sends us their entries.
    this.send({ type: 'req', node: this.node, to: '*' });
  }

  /** Stops the heartbeat and tells the other nodes this one's entries are gone. */
  close(): void {
    if (this.closed) return;
    this.closed = true;
    clearInterval(this.timer);
    this.send({ type: 'bye', node: this.node });
    this.pubsub.unsubscribe(this.syncTopic, this.subscriber);
  }

  /**
   * Tracks `key` with `meta` for this channel; untracked automatically when the channel ends.
   * Returns the new phx_ref. Throws if this channel already tracks `key`.
   */
  track(socket: ChannelSocket, key: string, meta: Record<string, unknown> = {}): string {
    if (!socket.alive) throw new Error('cannot track presence on a channel that has ended');
    const topic = socket.topic;
    const keys = this.topicMap(topic);
    const list = keys.get(key) ?? [];
    if (list.some((e) => e.owner === socket))
      throw new Error(`presence ${key} is already tracked on ${topic} by this channel`);
    const entry: Entry = { owner: socket, meta: { ...meta, phx_ref: presenceRef() } };
    list.push(entry);
    keys.set(key, list);
    let owned = this.owners.get(socket);
    if (owned === undefined) {
      owned = new Set();
      this.owners.set(socket, owned);
      socket.onTerminate(() => this.untrackAll(socket));
    }
    owned.add(key);
    this.sendDiff(topic, { joins: { [key]: { metas: [entry.meta] } }, leaves: {} });
    return entry.meta.phx_ref;
  }

  /** Replaces this channel's meta for `key`: one diff with the new meta in joins and the old in leaves. */
  update(
    socket: ChannelSocket,
    key: string,
    meta: Record<string, unknown> | ((old: PresenceMeta) => Record<string, unknown>),
  ): string {
    const entry = this.topics
      .get(socket.topic)
      ?.get(key)
      ?.find((e) => e.owner === socket);
    if (entry === undefined) throw new Error(`presence ${key} is not tracked on ${socket.topic} by this channel`);
    const old = entry.meta;
    const next = typeof meta === 'function' ? meta(old) : meta;
    const { phx_ref: _r, phx_ref_prev: _p, ...rest } = next as Record<string, unknown>;
    entry.meta = { ...rest, phx_ref: presenceRef(), phx_ref_prev: old.phx_ref };
    this.sendDiff(socket.topic, { joins: { [key]: { metas: [entry.meta] } }, leaves: { [key]: { metas: [old] } } });
    return entry.meta.phx_ref;
  }

  /** Stops tracking `key` for this channel. */
  untrack(socket: ChannelSocket, key: string): void {
    const meta = this.remove(socket.topic, key, socket);
    const owned = this.owners.get(socket);
    owned?.delete(key);
    if (meta !== null) this.sendDiff(socket.topic, { joins: {}, leaves: { [key]: { metas: [meta] } } });
  }

  private untrackAll(socket: ChannelSocket): void {
    const owned = this.owners.get(socket);
    this.owners.delete(socket);
    if (owned === undefined || owned.size === 0) return;
    const leaves = emptyState();
    for (const key of owned) {
      const meta = this.remove(socket.topic, key, socket);
      if (meta !== null) leaves[key] = { metas: [meta] };
    }
    if (Object.keys(leaves).length > 0) this.sendDiff(socket.topic, { joins: {}, leaves });
  }

  private remove(topic: string, key: string, socket: ChannelSocket): PresenceMeta | null {
    const keys = this.topics.get(topic);
    const list = keys?.get(key);
    if (keys === undefined || list === undefined) return null;
    const i = list.findIndex((e) => e.owner === socket);
    if (i === -1) return null;
    const [entry] = list.splice(i, 1);
    if (list.length === 0) keys.delete(key);
    if (keys.size === 0) this.topics.delete(topic);
    return entry!.meta;
  }

  /** Everyone on `topic`, on every node: `{ key: { metas: [...] } }`. */
  list(topic: string): PresenceState {
    const out = emptyState();
    const keys = this.topics.get(topic);
    if (keys) for (const [key, list] of keys) out[key] = { metas: list.map((e) => e.meta) };
    for (const r of this.replicas.values()) {
      const metas = r.topics.get(topic);
      if (metas) for (const [key, list] of metas) (out[key] ??= { metas: [] }).metas.push(...list);
    }
    return out;
  }

  /** This node's own entries on `topic`. */
  private localList(topic: string): PresenceState {
    const out: PresenceState = {};
    const keys = this.topics.get(topic);
    if (keys) for (const [key, list] of keys) out[key] = { metas: list.map((e) => e.meta) };
    return out;
  }

  /** Pushes `presence_state` to this channel's client (call it in join: it is sent right after the join reply). */
  pushState(socket: ChannelSocket): void {
    socket.push(this.stateEvent, this.list(socket.topic));
  }

  private topicMap(topic: string): Map<string, Entry[]> {
    let m = this.topics.get(topic);
    if (m === undefined) {
      m = new Map();
      this.topics.set(topic, m);
    }
    return m;
  }

  private sendDiff(topic: string, diff: PresenceDiff): void {
    this.pubsub.localBroadcast(topic, this.diffEvent, diff);
    this.seq++;
    this.send({ type: 'diff', node: this.node, seq: this.seq, topic, joins: diff.joins, leaves: diff.leaves });
  }

  private send(m: SyncMessage): void {
    if (this.closed && m.type !== 'bye') return;
    this.pubsub.broadcast(this.syncTopic, 'sync', m as unknown as Record<string, unknown>);
  }

  /** Every heartbeat: say we are alive, and drop the nodes that stopped saying so. */
  private tick(): void {
    this.send({ type: 'hb', node: this.node, seq: this.seq });
    const now = Date.now();
    for (const [node, r] of this.replicas) if (now - r.lastSeen > this.expireMs) this.dropNode(node);
  }

  private fromNode(m: SyncMessage): void {
    if (!m || typeof m !== 'object' || typeof m.node !== 'string' || m.node === this.node || this.closed) return;
    if (m.type === 'bye') return this.dropNode(m.node);
    if (m.type === 'req') {
      if (m.to === '*' || m.to === this.node) this.sendState();
      return;
    }
    let r = this.replicas.get(m.node);
    if (r === undefined) {
      r = { seq: -1, lastSeen: Date.now(), requestedAt: 0, topics: new Map() };
      this.replicas.set(m.node, r);
    }
    r.lastSeen = Date.now();
    if (m.type === 'hb') {
      if (r.seq !== m.seq) this.requestState(m.node, r);
    } else if (m.type === 'diff') {
      if (r.seq === m.seq - 1) {
        r.seq = m.seq;
        this.applyRemote(r, m.topic, m.joins, m.leaves);
      } else if (r.seq === -1 && m.seq === 1) {
        r.seq = 1; // a node that just started: nothing came before this diff
        this.applyRemote(r, m.topic, m.joins, m.leaves);
      } else {
        this.requestState(m.node, r);
      }
    } else if (m.type === 'state') {
      this.stateChunk(r, m);
    }
  }

  private requestState(node: string, r: Replica): void {
    const now = Date.now();
    if (now - r.requestedAt < this.expireMs) return; // one request in flight at a time
    r.requestedAt = now;
    this.send({ type: 'req', node: this.node, to: node });
  }

  /** Sends all of this node's entries, in chunks that fit the adapter, all in one go (nothing interleaves). */
  private sendState(): void {
    const sid = randomBytes(4).toString('hex');
    const chunks: Array<Record<string, PresenceState>> = [];
    let cur: Record<string, PresenceState> = {};
    let size = 0;
    for (const topic of this.topics.keys()) {
      for (const [key, { metas }] of Object.entries(this.localList(topic))) {
        const bytes = JSON.stringify(metas).length + key.length + topic.length;
        if (size > 0 && size + bytes > STATE_CHUNK_BYTES) {
          chunks.push(cur);
          cur = {};
          size = 0;
        }
        (cur[topic] ??= {})[key] = { metas };
        size += bytes;
      }
    }
    chunks.push(cur);
    chunks.forEach((topics, part) =>
      this.send({ type: 'state', node: this.node, seq: this.seq, sid, part, parts: chunks.length, topics }),
    );
  }

  private stateChunk(r: Replica, m: Extract<SyncMessage, { type: 'state' }>): void {
    if (!Number.isInteger(m.parts) || m.parts < 1 || !Number.isInteger(m.part) || m.part < 0 || m.part >= m.parts)
      return;
    if (r.incoming?.sid !== m.sid) r.incoming = { sid: m.sid, seq: m.seq, parts: new Array(m.parts), got: 0 };
    const inc = r.incoming;
    if (inc.parts[m.part] === undefined) inc.got++;
    inc.parts[m.part] = m.topics;
    if (inc.got < inc.parts.length) return;
    r.incoming = undefined;
    // Replace the replica; its clients see the difference as diffs, per topic.
    const next = new Map<string, Metas>();
    for (const part of inc.parts)
      for (const [topic, state] of Object.entries(part ?? {})) {
        const metas = next.get(topic) ?? new Map<string, PresenceMeta[]>();
        for (const [key, { metas: list }] of Object.entries(state))
          metas.set(key, [...(metas.get(key) ?? []), ...list]);
        next.set(topic, metas);
      }
    const topics = new Set([...r.topics.keys(), ...next.keys()]);
    for (const topic of topics) {
      const before = r.topics.get(topic) ?? new Map<string, PresenceMeta[]>();
      const after = next.get(topic) ?? new Map<string, PresenceMeta[]>();
      const joins = subtract(after, before);
      const leaves = subtract(before, after);
      if (Object.keys(joins).length || Object.keys(leaves).length)
        this.pubsub.localBroadcast(topic, this.diffEvent, { joins, leaves });
    }
    r.topics = next;
    r.seq = inc.seq;
    r.requestedAt = 0;
  }

  /** Applies another node's diff to its replica and tells this node's clients. */
  private applyRemote(r: Replica, topic: string, joins: PresenceState, leaves: PresenceState): void {
    if (typeof topic !== 'string' || !joins || !leaves) return;
    const metas = r.topics.get(topic) ?? new Map<string, PresenceMeta[]>();
    for (const [key, { metas: gone }] of Object.entries(leaves)) {
      const refs = new Set(gone.map((m) => m.phx_ref));
      const kept = (metas.get(key) ?? []).filter((m) => !refs.has(m.phx_ref));
      if (kept.length) metas.set(key, kept);
      else metas.delete(key);
    }
    for (const [key, { metas: added }] of Object.entries(joins)) metas.set(key, [...(metas.get(key) ?? []), ...added]);
    if (metas.size) r.topics.set(topic, metas);
    else r.topics.delete(topic);
    this.pubsub.localBroadcast(topic, this.diffEvent, { joins, leaves });
  }

  /** A node is gone: every entry it had leaves. */
  private dropNode(node: string): void {
    const r = this.replicas.get(node);
    if (r === undefined) return;
    this.replicas.delete(node);
    for (const [topic, metas] of r.topics) {
      const leaves: PresenceState = {};
      for (const [key, list] of metas) leaves[key] = { metas: list };
      if (Object.keys(leaves).length) this.pubsub.localBroadcast(topic, this.diffEvent, { joins: {}, leaves });
    }
  }
}

/** The metas of `a` whose phx_ref `b` does not have, per key. */
function subtract(a: Metas, b: Metas): PresenceState {
  const out: PresenceState = {};
  for (const [key, list] of a) {
    const refs = new Set((b.get(key) ?? []).map((m) => m.phx_ref));
    const only = list.filter((m) => !refs.has(m.phx_ref));
    if (only.length) out[key] = { metas: only };
  }
  return out;
}
