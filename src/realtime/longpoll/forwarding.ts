/**
 * Forwarding: a request for a session held by another node goes to that node over the bus and
 * its answer comes back (Phoenix forwards long-poll requests over its PubSub the same way). This
 * part plays both sides: the node that took the request, and the owner that serves it.
 */
import { randomBytes } from 'node:crypto';
import type { ForwardedRequest, ForwardingMessage, LpBody } from './messages';
import type { LongPollNode, MoveBook } from './node';
import type { LongPollSession, PollAnswer } from './session';

/** How often a forwarded request may be sent on to the session's newer node. */
const MAX_HOPS = 3;

/** A request this node forwarded to a session's owner, waiting for its answer. */
interface Forwarded {
  timer: NodeJS.Timeout;
  /** The request as sent (sent again, to a newer owner, when the session moved), and where. */
  request: ForwardedRequest;
  node: string;
  hops: number;
  /** The owner answered (null: it did not, in time: deemed gone). */
  done(body: LpBody | null): void;
  /** A poll's answer when this node closes first (the session lives on: the client polls again); null for a POST. */
  onClose: LpBody | null;
  /** Resolves once settled. */
  settled: Promise<void>;
  resolveSettled(): void;
}

export class Forwarding {
  /** Requests this node forwarded, by request id. */
  private readonly forwarded = new Map<string, Forwarded>();
  /** Polls other nodes forwarded here and this node holds, by request id (for cancel). */
  private readonly remotePolls = new Map<string, { session: LongPollSession; answer: PollAnswer }>();

  constructor(
    private readonly node: LongPollNode,
    private readonly moves: MoveBook,
  ) {}

  // ---- the node that took the request ---------------------------------------------------------

  /**
   * Forwards a poll to the owner. `done` gets its answer, or null when the owner is deemed gone.
   * Returns `release`, for when the client leaves first: the poll is answered 204 here and released
   * at the owner, which keeps the messages for the next poll.
   */
  poll(owner: string, sid: string, onClose: LpBody, done: (body: LpBody | null) => void): () => void {
    const rid = this.forward(owner, { t: 'poll', sid }, done, onClose);
    return () => {
      const entry = this.forwarded.get(rid);
      if (entry === undefined) return;
      this.settle(rid, { status: 204 });
      this.node.sendTo(entry.node, { t: 'cancel', rid });
    };
  }

  /** Forwards a POST's body to the owner; `done` gets its answer, or null when the owner is deemed gone. */
  post(owner: string, sid: string, ctype: string | null, body: Buffer, done: (body: LpBody | null) => void): void {
    this.forward(owner, { t: 'post', sid, ctype, body: body.toString('base64') }, done, null);
  }

  /**
   * Sends a request to `node` and calls `done` with its answer, or with null when the owner gave
   * no sign of life within busTimeoutMs (or none of an answer within windowMs after it did).
   */
  private forward(
    node: string,
    request: ForwardedRequest,
    done: (body: LpBody | null) => void,
    onClose: LpBody | null,
  ): string {
    const rid = randomBytes(12).toString('base64url');
    let resolveSettled!: () => void;
    const settled = new Promise<void>((r) => {
      resolveSettled = r;
    });
    const timer = setTimeout(() => this.settle(rid, null), this.node.busTimeoutMs);
    this.forwarded.set(rid, { timer, request, node, hops: 0, done, onClose, settled, resolveSettled });
    this.node.sendTo(node, { ...request, rid });
    return rid;
  }

  /** The owner asked says the session moved to `node`: the request goes there. */
  private forwardAgain(rid: string, node: string): void {
    const entry = this.forwarded.get(rid);
    if (entry === undefined) return;
    if (++entry.hops > MAX_HOPS) {
      this.settle(rid, null);
      return;
    }
    clearTimeout(entry.timer);
    entry.timer = setTimeout(() => this.settle(rid, null), this.node.busTimeoutMs);
    entry.node = node;
    this.node.sendTo(node, { ...entry.request, rid });
  }

  private settle(rid: string, body: LpBody | null): void {
    const entry = this.forwarded.get(rid);
    if (entry === undefined) return;
    this.forwarded.delete(rid);
    clearTimeout(entry.timer);
    // The client loses its session (it reconnects and rejoins): worth seeing at the default level.
    if (body === null) this.node.host.logger.warn({ rid }, 'realtime: long-poll session owner did not answer');
    entry.resolveSettled();
    entry.done(body);
  }

  // ---- the bus ---------------------------------------------------------------------------------

  receive(m: ForwardingMessage, from: string): void {
    switch (m.t) {
      case 'poll':
      case 'post':
        this.serve(m, from);
        return;
      case 'ack': {
        // The owner is alive and holds the request: wait for its answer a window longer.
        const entry = this.forwarded.get(m.rid);
        if (entry === undefined) return;
        clearTimeout(entry.timer);
        entry.timer = setTimeout(() => this.settle(m.rid, null), this.node.windowMs + this.node.busTimeoutMs);
        return;
      }
      case 'res':
        if (this.forwarded.has(m.rid)) this.settle(m.rid, m.body);
        // Too late (the client left): give the messages back so the next poll carries them.
        else if (m.body.messages !== undefined && m.body.messages.length > 0)
          this.node.sendTo(from, { t: 'requeue', sid: m.sid, messages: m.body.messages });
        return;
      case 'gone':
        this.settle(m.rid, null);
        return;
      case 'redirect':
        this.moves.learnMoved(m.sid, m.node);
        this.forwardAgain(m.rid, m.node);
        return;
      case 'cancel': {
        const held = this.remotePolls.get(m.rid);
        this.remotePolls.delete(m.rid);
        held?.session.cancelPoll(held.answer);
        return;
      }
      case 'requeue':
        this.node.session(m.sid)?.requeue(m.messages);
        return;
    }
  }

  // ---- the owner ---------------------------------------------------------------------------------

  /** Another node forwards a request for one of our sessions. */
  private serve(m: Extract<ForwardingMessage, { t: 'poll' | 'post' }>, from: string): void {
    const { rid, sid } = m;
    const session = this.node.session(sid);
    if (session === undefined) {
      const moved = this.moves.whereMoved(sid);
      if (moved !== undefined && moved !== from && moved !== this.node.nodeId)
        this.node.sendTo(from, { t: 'redirect', rid, sid, node: moved });
      else this.node.sendTo(from, { t: 'gone', rid });
      return;
    }
    const reply = (body: LpBody): void => this.node.sendTo(from, { t: 'res', rid, sid, body });
    if (m.t === 'poll') {
      let answered = false;
      const answer: PollAnswer = (body) => {
        answered = true;
        this.remotePolls.delete(rid);
        reply(body);
      };
      session.listen(answer);
      if (!answered) {
        this.remotePolls.set(rid, { session, answer });
        this.node.sendTo(from, { t: 'ack', rid });
      }
      return;
    }
    const result = session.post(m.ctype ?? '', Buffer.from(m.body, 'base64'));
    if (result instanceof Promise) {
      this.node.sendTo(from, { t: 'ack', rid });
      void result.then(reply);
    } else {
      reply(result);
    }
  }

  /**
   * This node closes. Requests it forwarded are for sessions that live on elsewhere: a poll is
   * answered at once (its client polls again, through another node) and released at the owner;
   * a POST's frames are with the owner, so its answer is waited for (at most the forwarding
   * timeout). The bus must stay open until this resolves.
   */
  async close(): Promise<void> {
    const waiting: Promise<void>[] = [];
    for (const [rid, entry] of Array.from(this.forwarded)) {
      waiting.push(entry.settled);
      if (entry.onClose === null) continue;
      this.node.sendTo(entry.node, { t: 'cancel', rid });
      this.settle(rid, entry.onClose);
    }
    await Promise.all(waiting);
  }
}
