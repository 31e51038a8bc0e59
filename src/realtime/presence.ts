/**
 * Presence (Phoenix.Presence, local node): who is on a topic. Tracks entries per channel;
 * sends `presence_diff` broadcasts and builds the `presence_state` push. Entries are always
 * `{ key: { metas: [ {...meta, phx_ref} ] } }`, the only shape SwiftPhoenixClient 5.3.4 accepts.
 */
import { randomBytes } from 'node:crypto';
import type { ChannelSocket } from './channel';
import type { PubSub } from './pubsub';

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
}

export class Presence {
  private readonly pubsub: PubSub;
  private readonly topics = new Map<string, Map<string, Entry[]>>();
  private readonly owners = new Map<ChannelSocket, Set<string>>();
  readonly stateEvent: string;
  readonly diffEvent: string;

  /** `server` is a RealtimeServer (or anything with its pubsub). */
  constructor(server: { pubsub: PubSub }, opts: PresenceOptions = {}) {
    this.pubsub = server.pubsub;
    this.stateEvent = opts.stateEvent ?? 'presence_state';
    this.diffEvent = opts.diffEvent ?? 'presence_diff';
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

  /** Everyone on `topic`: `{ key: { metas: [...] } }`. */
  list(topic: string): PresenceState {
    const out = emptyState();
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
    // Local-only: presence state is not replicated across nodes (see README).
    this.pubsub.localBroadcast(topic, this.diffEvent, diff);
  }
}
