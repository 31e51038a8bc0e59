/**
 * Handover (beyond Phoenix, whose sessions die with their node): a node that stops gracefully
 * hands each session to a live node. It sends the connection as `connect` made it (params,
 * assigns, id, expiry: never the request's headers or credentials), its channels' joins (each
 * with its channel's `rejoinPayload`), the frames not handled yet and the undelivered messages.
 * The new node opens the connection from that and replays the frames, the joins quietly (their
 * client had its replies). It goes through the core's narrow seam: `Connection.unhandled()`,
 * `Connection.inject()`, and the channels' `rejoinPayload`.
 */
import { randomBytes } from 'node:crypto';
import type { Connection } from '../connection';
import { negotiateSerializer } from '../serializer';
import type { HandedFrame, HandedSession, HandoverMessage } from './messages';
import type { LongPollNode, MoveBook } from './node';
import type { LongPollSession } from './session';
import { ID } from './tokens';

/** After the first node answers "who is up?", how long a stopping node waits for more. */
const PROBE_SETTLE_MS = 200;
/** How long nodes remember where a session went (its client takes the new token at its next poll). */
const MOVED_TTL_MS = 5 * 60_000;

export class Handover implements MoveBook {
  /** Sessions handed over (by any node): where each went, and when this node learnt it. */
  private readonly moved = new Map<string, { node: string; at: number }>();
  /** "Who is up?" questions of this node waiting for answers, by request id. */
  private readonly probes = new Map<string, (node: string) => void>();
  /** Sessions this node handed over, waiting for their new node to say it has them, by session id. */
  private readonly handing = new Map<string, () => void>();

  constructor(private readonly node: LongPollNode) {}

  whereMoved(sid: string): string | undefined {
    return this.moved.get(sid)?.node;
  }

  learnMoved(sid: string, node: string): void {
    if (!ID.test(sid) || !ID.test(node)) return;
    const now = Date.now();
    for (const [k, v] of this.moved) {
      if (now - v.at <= MOVED_TTL_MS) break; // oldest first
      this.moved.delete(k);
    }
    this.moved.delete(sid);
    if (node !== this.node.nodeId || this.node.session(sid) === undefined) this.moved.set(sid, { node, at: now });
  }

  receive(m: HandoverMessage, from: string): void {
    switch (m.t) {
      case 'who':
        // A node stopping looks for nodes to take its sessions: one that stops too takes none.
        if (!this.node.host.isDraining) this.node.sendTo(from, { t: 'here', rid: m.rid });
        return;
      case 'here':
        this.probes.get(m.rid)?.(from);
        return;
      case 'moved':
        this.learnMoved(m.sid, m.node);
        return;
      case 'adopt':
        this.adopt(m.sid, m.session, from);
        return;
      case 'adopted':
        this.handing.get(m.sid)?.();
        return;
    }
  }

  /**
   * Moves every session to the live nodes that answer (round robin), before this node stops.
   * Returns how many moved; with no other node up, none do (they end with the node, as in Phoenix).
   */
  async handOver(): Promise<number> {
    const sessions = this.node.sessions();
    if (sessions.length === 0) return 0;
    const nodes = await this.liveNodes();
    const logger = this.node.host.logger;
    if (nodes.length === 0) {
      logger.warn({ sessions: sessions.length }, 'realtime: no node to take the long-poll sessions over');
      return 0;
    }
    const moves: Promise<void>[] = [];
    for (const s of sessions) {
      if (s.closed) continue;
      const move = this.moveSession(s, nodes[moves.length % nodes.length]!);
      if (move !== null) moves.push(move);
    }
    await Promise.all(moves);
    logger.info({ sessions: moves.length, nodes: nodes.length }, 'realtime: long-poll sessions handed over');
    return moves.length;
  }

  /** The nodes that answer "who is up?" (draining ones do not): all that answer within a short while of the first. */
  private liveNodes(): Promise<string[]> {
    return new Promise((resolve) => {
      const rid = randomBytes(12).toString('base64url');
      const nodes: string[] = [];
      const done = () => {
        this.probes.delete(rid);
        resolve(nodes);
      };
      let timer = setTimeout(done, this.node.busTimeoutMs);
      this.probes.set(rid, (node) => {
        if (nodes.includes(node)) return;
        nodes.push(node);
        if (nodes.length > 1) return;
        clearTimeout(timer);
        timer = setTimeout(done, PROBE_SETTLE_MS);
      });
      this.node.sendAll({ t: 'who', rid });
    });
  }

  /**
   * Hands `s` to `node`: its connection ends here, its state goes there, every node learns where
   * it is. Requests forwarded there after this reach it after the state (the bus keeps a sender's
   * order, and other nodes learn of the move from this node's later messages); the client's held
   * poll is answered with the new token once the node says it has the session (or after busTimeoutMs).
   * Null when the session cannot travel (its assigns are not plain JSON): it ends with this node.
   */
  private moveSession(s: LongPollSession, node: string): Promise<void> | null {
    const handed = suspend(s.conn);
    if (handed === null) {
      this.node.host.logger.warn(
        { socketId: s.conn.id },
        'realtime: a long-poll session whose assigns are not plain JSON is not handed over',
      );
      return null;
    }
    s.conn.transportClosed('handover');
    const session: HandedSession = { ...handed, queue: s.takeQueue() };
    const adopted = new Promise<void>((resolve) => {
      const timer = setTimeout(done, this.node.busTimeoutMs);
      function done() {
        clearTimeout(timer);
        resolve();
      }
      this.handing.set(s.sid, done);
    }).finally(() => this.handing.delete(s.sid));
    this.node.sendTo(node, { t: 'adopt', sid: s.sid, session });
    this.learnMoved(s.sid, node);
    this.node.sendAll({ t: 'moved', sid: s.sid, node });
    return s.movedTo(this.node.tokens.sign(node, s.sid), adopted);
  }

  /** Another node hands us a session: it is served here at once, its channels joined again quietly. */
  private adopt(sid: string, st: HandedSession, from: string): void {
    const { host } = this.node;
    if (this.node.session(sid) !== undefined) return;
    if (host.isDraining) {
      host.logger.warn({ from }, 'realtime: a long-poll session handed over while this node stops; dropped');
      return;
    }
    const serializer = negotiateSerializer(st.params.vsn);
    if (serializer === null) {
      host.logger.warn(
        { from, vsn: st.params.vsn },
        'realtime: a handed-over long-poll session has no usable vsn; dropped',
      );
      return;
    }
    const session = this.node.openSession(sid);
    session.requeue(st.queue);
    this.moved.delete(sid);
    const { params, assigns, id, expiresAt } = st;
    const conn = host.openConnection(
      session,
      { serializer, params, assigns, id, expiresAt },
      this.node.sessionTimeoutMs,
    );
    for (const f of st.frames) conn.inject(f.msg, f.quiet);
    this.node.sendTo(from, { t: 'adopted', sid });
  }
}

/**
 * What another node needs to carry `conn` on: its channels' joins (quiet, with each channel's
 * rejoinPayload, read after its last push), then the client frames not handled yet (binary
 * pushes dropped: their payload does not travel as JSON). Null when its assigns are not plain JSON.
 */
function suspend(conn: Connection): Omit<HandedSession, 'queue'> | null {
  if (!isPlainJson(conn.assigns)) return null;
  const frames: HandedFrame[] = [];
  for (const ch of conn.channels.values()) {
    const msg = {
      joinRef: ch.frameJoinRef,
      ref: ch.joinRef,
      topic: ch.topic,
      event: 'phx_join',
      payload: ch.rejoinPayload(),
    };
    frames.push({ msg, quiet: true });
  }
  for (const f of conn.unhandled()) if (!Buffer.isBuffer(f.msg.payload)) frames.push(f);
  const assigns = conn.assigns as Record<string, unknown>;
  return { params: conn.params, assigns, id: conn.id, expiresAt: conn.expiresAt, frames };
}

/** Plain objects, arrays, strings, finite numbers, booleans and null (undefined properties are left out by JSON). */
function isPlainJson(v: unknown, depth = 0): boolean {
  if (depth > 64) return false;
  if (v === null || typeof v === 'string' || typeof v === 'boolean') return true;
  if (typeof v === 'number') return Number.isFinite(v);
  if (Array.isArray(v)) return v.every((x) => isPlainJson(x, depth + 1));
  if (typeof v !== 'object') return false;
  const proto = Object.getPrototypeOf(v) as unknown;
  if (proto !== Object.prototype && proto !== null) return false;
  return Object.values(v).every((x) => x === undefined || isPlainJson(x, depth + 1));
}
