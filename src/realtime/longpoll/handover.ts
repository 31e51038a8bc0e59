/**
 * Handover (beyond Phoenix, whose sessions die with their node): a node that stops gracefully
 * hands each session to a live node. It sends the connection as `connect` made it (params,
 * assigns, id, expiry: never the request's headers or credentials), its channels' joins (each
 * with its channel's `rejoinPayload`), the frames not handled yet and the undelivered messages.
 * The new node opens the connection from that and replays the frames, the joins quietly (their
 * client had its replies). It goes through the core's narrow seam: `Connection.unhandled()`,
 * `Connection.inject()`, and the channels' `rejoinPayload`.
 *
 * Nodes that stop together never take each other's sessions: a stopping node says `leaving` to
 * every node first, answers no "who is up?", and refuses (`refused`) a session handed to it
 * anyway (it answered before it began to stop); the session then goes to the next live node,
 * or, with none left, ends (its client reconnects). Only sessions a live node confirmed are
 * counted as handed over.
 */
import { randomBytes } from 'node:crypto';
import type { Connection } from '../connection';
import { negotiateSerializer } from '../serializer';
import type { HandedFrame, HandedSession, HandoverMessage, LpBody } from './messages';
import type { LongPollNode, MoveBook } from './node';
import type { LongPollSession } from './session';
import { ID } from './tokens';

/** After the first node answers "who is up?", how long a stopping node waits for more. */
const PROBE_SETTLE_MS = 200;
/** How long nodes remember where a session went (its client takes the new token at its next poll). */
const MOVED_TTL_MS = 5 * 60_000;

/** What became of one session: taken by a live node (`adopted`), sent without an answer in time (`unconfirmed`), or ended here. */
type Outcome = { node: string; answer: 'adopted' | 'unconfirmed' } | null;

export class Handover implements MoveBook {
  /** Sessions handed over (by any node): where each went, and when this node learnt it. */
  private readonly moved = new Map<string, { node: string; at: number }>();
  /** "Who is up?" questions of this node waiting for answers, by request id. */
  private readonly probes = new Map<string, (node: string) => void>();
  /** Sessions this node handed over, waiting for their new node to say it has them, by session id. */
  private readonly handing = new Map<string, (answer: 'adopted' | 'refused') => void>();
  /** Nodes known to be stopping (they said `leaving`, asked "who is up?" or refused a session), and since when. */
  private readonly leaving = new Map<string, number>();

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
        this.markLeaving(from);
        if (!this.node.host.isDraining) this.node.sendTo(from, { t: 'here', rid: m.rid });
        return;
      case 'leaving':
        this.markLeaving(from);
        return;
      case 'here':
        if (!this.leaving.has(from)) this.probes.get(m.rid)?.(from);
        return;
      case 'moved':
        this.learnMoved(m.sid, m.node);
        return;
      case 'adopt':
        this.adopt(m.sid, m.session, from);
        return;
      case 'adopted':
        this.handing.get(m.sid)?.('adopted');
        return;
      case 'refused':
        this.markLeaving(from);
        this.handing.get(m.sid)?.('refused');
        return;
    }
  }

  private markLeaving(node: string): void {
    const now = Date.now();
    for (const [k, at] of this.leaving) {
      if (now - at <= MOVED_TTL_MS) break; // oldest first
      this.leaving.delete(k);
    }
    this.leaving.delete(node);
    this.leaving.set(node, now);
  }

  /**
   * Moves every session to the live nodes that answer (round robin), before this node stops.
   * Returns how many a live node confirmed it took; with no other node up, none move (they end
   * with the node, as in Phoenix).
   */
  async handOver(): Promise<number> {
    // First of all: no node stopping at the same time hands its sessions to this one.
    this.node.sendAll({ t: 'leaving' });
    const sessions = this.node.sessions();
    if (sessions.length === 0) return 0;
    const nodes = await this.liveNodes();
    const logger = this.node.host.logger;
    if (nodes.length === 0) {
      logger.warn({ sessions: sessions.length }, 'realtime: no node to take the long-poll sessions over');
      return 0;
    }
    const moves: Promise<Outcome | 'kept'>[] = [];
    for (const s of sessions) if (!s.closed) moves.push(this.moveSession(s, nodes, moves.length));
    const outcomes = await Promise.all(moves);
    const to = new Map<string, number>();
    let unconfirmed = 0;
    let ended = 0;
    for (const o of outcomes) {
      if (o === 'kept') continue;
      if (o === null) ended++;
      else if (o.answer === 'unconfirmed') unconfirmed++;
      else to.set(o.node, (to.get(o.node) ?? 0) + 1);
    }
    const handed = [...to.values()].reduce((a, b) => a + b, 0);
    const parts = [`realtime: handed ${handed} long-poll session(s) to ${to.size} live node(s)`];
    if (unconfirmed > 0) parts.push(`${unconfirmed} sent without an answer in time`);
    if (ended > 0) parts.push(`${ended} had no live node to go to and ended`);
    logger.info({ sessions: handed, nodes: Object.fromEntries(to), unconfirmed, ended }, parts.join('; '));
    return handed;
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
   * Hands `s` to a live node, `nodes[first]` or else the next ones: its connection ends here, its
   * state goes there, every node learns where it is. Requests forwarded there after this reach it
   * after the state (the bus keeps a sender's order, and other nodes learn of the move from this
   * node's later messages); the client's held poll is answered with the new token once the node
   * says it has the session (or after busTimeoutMs). A node that refuses (it is stopping too) is
   * skipped; with no node left the session ends and its poll is answered 410 (the client
   * reconnects). `'kept'` when the session cannot travel (its assigns are not plain JSON): it
   * ends with this node.
   */
  private async moveSession(s: LongPollSession, nodes: string[], first: number): Promise<Outcome | 'kept'> {
    const handed = suspend(s.conn);
    if (handed === null) {
      this.node.host.logger.warn(
        { socketId: s.conn.id },
        'realtime: a long-poll session whose assigns are not plain JSON is not handed over',
      );
      return 'kept';
    }
    s.conn.transportClosed('handover');
    const session: HandedSession = { ...handed, queue: s.takeQueue() };
    const placed = this.place(s.sid, session, nodes, first);
    const answer = placed.then((o): LpBody =>
      o === null ? { status: 410 } : { status: 204, token: this.node.tokens.sign(o.node, s.sid), messages: [] },
    );
    await s.movedTo(answer);
    return placed;
  }

  /** Offers the session to the live nodes in turn, from `nodes[first]`, until one takes it (or does not answer in time). */
  private async place(sid: string, session: HandedSession, nodes: string[], first: number): Promise<Outcome> {
    for (let k = 0; k < nodes.length; k++) {
      const node = nodes[(first + k) % nodes.length]!;
      if (this.leaving.has(node)) continue;
      const answer = await this.offer(sid, session, node);
      if (answer !== 'refused') return { node, answer };
    }
    return null;
  }

  /** Sends the session to `node` and tells every node it went there; resolves with that node's answer. */
  private offer(sid: string, session: HandedSession, node: string): Promise<'adopted' | 'refused' | 'unconfirmed'> {
    const answered = new Promise<'adopted' | 'refused' | 'unconfirmed'>((resolve) => {
      const done = (answer: 'adopted' | 'refused' | 'unconfirmed') => {
        clearTimeout(timer);
        if (this.handing.get(sid) === done) this.handing.delete(sid);
        resolve(answer);
      };
      const timer = setTimeout(() => done('unconfirmed'), this.node.busTimeoutMs);
      this.handing.set(sid, done);
    });
    this.node.sendTo(node, { t: 'adopt', sid, session });
    this.learnMoved(sid, node);
    this.node.sendAll({ t: 'moved', sid, node });
    return answered;
  }

  /** Another node hands us a session: it is served here at once, its channels joined again quietly. */
  private adopt(sid: string, st: HandedSession, from: string): void {
    const { host } = this.node;
    if (this.node.session(sid) !== undefined) return;
    if (host.isDraining) {
      // It asked before this node began to stop: it sends the session to another node.
      this.node.sendTo(from, { t: 'refused', sid });
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
