/**
 * One client connection, whatever the transport: decodes frames, answers heartbeats, routes
 * joins/leaves/events to channel instances (Phoenix.Socket's handle_in clauses).
 */
import { type Assigns, type Channel, type ChannelHost, ChannelInstance, type JoinResult } from './channel';
import { assertPushPayload, type InboundMessage, type OutboundMessage, type Payload, type Ref } from './message';
import type { Params } from './params';
import type { Fanout, PubSub, Subscriber } from './pubsub';
import type { RealtimeLogger } from './logger';
import type { EncodedFrame, Serializer } from './serializer';
import { CloseCode, type Transport, type TransportKind } from './transport';
import { InboundGuard } from './inbound-guard';

/** Counters shared by all connections of one server. */
export interface RealtimeStats {
  sockets: number;
  channels: number;
  joins: number;
  joinErrors: number;
  messagesIn: number;
  messagesOut: number;
  protocolErrors: number;
  rateLimited: number;
  slowClientDisconnects: number;
  idleDisconnects: number;
  channelCrashes: number;
  connectsRefused: number;
}

/** What a connection needs from its server. */
export interface ConnectionContext {
  readonly pubsub: PubSub;
  readonly logger: RealtimeLogger;
  readonly counters: RealtimeStats;
  readonly maxChannelsPerSocket: number;
  readonly rateLimit: { messages: number; intervalMs: number } | null;
  readonly maxProtocolErrors: number;
  readonly maxPayloadDepth: number;
  route(topic: string): Channel | null;
  connectionClosed(conn: Connection): void;
}

/** A client frame not handled yet; `quiet` for a join made by {@link Connection.inject} that answers only if it fails. */
export interface UnhandledFrame {
  msg: InboundMessage;
  quiet: boolean;
}

const EMPTY = Object.freeze({}) as Record<string, never>;
/** Most client frames held per socket behind a pending join, and per channel behind a busy handler. */
export const MAX_QUEUED = 1000;
const UNMATCHED = Object.freeze({ reason: 'unmatched topic' });
const TOO_MANY = Object.freeze({ reason: 'too many channels joined' });
const JOIN_CRASHED = Object.freeze({ reason: 'join crashed' });

/** The longest delay setTimeout keeps (2^31 - 1 ms). */
const MAX_TIMER_MS = 2 ** 31 - 1;

function isThenable<T>(v: unknown): v is PromiseLike<T> {
  return v !== null && typeof v === 'object' && typeof (v as { then?: unknown }).then === 'function';
}

export class Connection implements ChannelHost, Subscriber {
  readonly id: string | null;
  readonly params: Params;
  readonly assigns: Assigns;
  readonly serializer: Serializer;
  readonly ctx: ConnectionContext;
  transport: Transport;
  readonly channels = new Map<string, ChannelInstance>();
  /** True once close() was called (the transport may still be finishing its handshake). */
  get isClosing(): boolean {
    return this.closing || this.closed;
  }
  /** ms timestamp of the last inbound frame (idle sweep). */
  lastSeen: number;
  /** Idle limit in ms for this connection (0 = none). */
  idleTimeoutMs: number;
  closed = false;
  /** Frames that arrived while an async join was running; processed in order afterwards. */
  private inbox: InboundMessage[] | null = null;
  private joining = false;
  /** The join running while `joining`. */
  private joiningMsg: InboundMessage | null = null;
  /** Joins made by inject(msg, true): their client had its reply elsewhere. */
  private readonly quietJoins = new WeakSet<InboundMessage>();
  private idleWaiter: { promise: Promise<void>; resolve: () => void } | null = null;
  private closing = false;
  private readonly guard: InboundGuard;
  private expiryTimer: NodeJS.Timeout | null = null;
  /** When the credentials expire (ms since the epoch), or null: see {@link expireAt}. */
  expiresAt: number | null = null;

  constructor(
    ctx: ConnectionContext,
    transport: Transport,
    serializer: Serializer,
    params: Params,
    assigns: Assigns,
    id: string | null,
    idleTimeoutMs: number,
  ) {
    this.ctx = ctx;
    this.transport = transport;
    this.serializer = serializer;
    this.params = params;
    this.assigns = assigns;
    this.id = id;
    this.idleTimeoutMs = idleTimeoutMs;
    this.lastSeen = Date.now();
    this.guard = new InboundGuard(ctx, id);
    if (id !== null) ctx.pubsub.subscribe(id, this);
  }

  get transportKind(): TransportKind {
    return this.transport.kind;
  }
  get pubsub(): PubSub {
    return this.ctx.pubsub;
  }
  get logger(): RealtimeLogger {
    return this.ctx.logger;
  }

  // ---- inbound ---------------------------------------------------------------------------

  /** One raw frame from the transport. Never throws. */
  handleFrame(data: Buffer, isBinary: boolean): void {
    if (this.closed || this.closing) return;
    const now = Date.now();
    this.lastSeen = now;
    if (!this.guard.admit(now)) {
      this.close(CloseCode.policyViolation, 'rate limit exceeded');
      return;
    }
    let msg: InboundMessage;
    try {
      msg = this.serializer.decode(data, isBinary);
    } catch (err) {
      if (this.guard.malformed(err, data.length)) this.close(CloseCode.policyViolation, 'malformed frames');
      return;
    }
    this.ctx.counters.messagesIn++;
    const refusal = this.guard.tooDeep(msg);
    if (refusal === null) this.receive(msg);
    else this.send(refusal);
  }

  /** A decoded client message: handled now, or queued behind a pending join. */
  private receive(msg: InboundMessage): void {
    if (this.inbox !== null) {
      if (this.inbox.length >= MAX_QUEUED) {
        this.overloaded('frames queued behind a pending join');
        return;
      }
      this.inbox.push(msg);
      return;
    }
    try {
      this.dispatch(msg);
    } catch (err) {
      // A bug or an unencodable reply must cost this socket at most, never the process.
      this.ctx.logger.error(
        { err, socketId: this.id, topic: msg.topic, event: msg.event },
        'realtime: frame handling failed, closing socket',
      );
      this.close(CloseCode.serverError, 'internal error');
    }
  }

  /** A client queued more work than a socket may hold: close it (the rate limit's second line). */
  overloaded(what: string): void {
    this.ctx.counters.rateLimited++;
    this.ctx.logger.warn({ socketId: this.id, limit: MAX_QUEUED }, `realtime: too many ${what}, closing socket`);
    this.close(CloseCode.policyViolation, 'too many queued messages');
  }

  private dispatch(msg: InboundMessage): void {
    const { topic, event } = msg;
    if (topic === 'phoenix' && event === 'heartbeat') {
      this.send({ kind: 'reply', joinRef: null, ref: msg.ref, topic, status: 'ok', response: EMPTY });
      return;
    }
    if (event === 'phx_join') {
      this.join(msg);
      return;
    }
    const ch = this.channels.get(topic);
    if (ch !== undefined) {
      // A non-null join_ref other than the one the join frame carried is stale (an earlier join,
      // or "" in a binary push): dropped without a word, as Phoenix 1.8.12 does.
      if (msg.joinRef !== null && msg.joinRef !== ch.frameJoinRef) return;
      if (event === 'phx_leave') ch.leave(msg.ref);
      else ch.handleIn(event, msg.payload, msg.ref);
      return;
    }
    if (event === 'phx_leave') {
      this.send({ kind: 'reply', joinRef: msg.joinRef, ref: msg.ref, topic, status: 'ok', response: EMPTY });
      return;
    }
    this.send({ kind: 'reply', joinRef: null, ref: msg.ref, topic, status: 'error', response: UNMATCHED });
  }

  private join(msg: InboundMessage): void {
    const { topic } = msg;
    const old = this.channels.get(topic);
    if (old !== undefined) {
      // Duplicate join: the old channel goes first; its phx_close follows the new join's reply.
      old.teardown('duplicate_join');
    } else if (this.channels.size >= this.ctx.maxChannelsPerSocket) {
      this.ctx.counters.joinErrors++;
      this.answerJoin(msg, msg.joinRef, 'error', TOO_MANY);
      return;
    }
    const handler = this.ctx.route(topic);
    if (handler === null) {
      this.ctx.counters.joinErrors++;
      this.ctx.logger.debug({ socketId: this.id, topic }, 'realtime: join for unmatched topic');
      this.answerJoin(msg, null, 'error', UNMATCHED);
      if (old !== undefined) this.sendClose(old);
      return;
    }
    const ch = new ChannelInstance(this, topic, msg.joinRef, msg.ref, handler, this.assigns);
    ch.joinPayload = msg.payload;
    let result: JoinResult | PromiseLike<JoinResult>;
    try {
      ch.beginJoin();
      result = handler.join(topic, msg.payload, ch);
    } catch (err) {
      this.joinDone(msg, ch, old, null, err);
      return;
    }
    if (isThenable(result)) {
      this.inbox = [];
      this.joining = true;
      this.joiningMsg = msg;
      result.then(
        (r) => this.safeJoinDone(msg, ch, old, r, undefined),
        (err: unknown) => this.safeJoinDone(msg, ch, old, null, err ?? new Error('join rejected')),
      );
      return;
    }
    this.joinDone(msg, ch, old, result, undefined);
  }

  /** joinDone from a promise callback: nothing may escape as an unhandled rejection. */
  private safeJoinDone(
    msg: InboundMessage,
    ch: ChannelInstance,
    old: ChannelInstance | undefined,
    result: JoinResult | null,
    err: unknown,
  ): void {
    try {
      this.joinDone(msg, ch, old, result, err);
    } catch (e) {
      this.ctx.logger.error(
        { err: e, socketId: this.id, topic: msg.topic },
        'realtime: join completion failed, closing socket',
      );
      this.close(CloseCode.serverError, 'internal error');
    }
  }

  private joinDone(
    msg: InboundMessage,
    ch: ChannelInstance,
    old: ChannelInstance | undefined,
    result: JoinResult | null,
    err: unknown,
  ): void {
    if (this.closed) {
      ch.teardown('closed');
      return;
    }
    if (err === undefined && result !== null && typeof result === 'object' && result.response !== undefined) {
      try {
        assertPushPayload(result.response, 'join reply');
      } catch (e) {
        err = e;
      }
    }
    if (err !== undefined || result === null || typeof result !== 'object') {
      this.ctx.counters.joinErrors++;
      this.ctx.logger.error(
        { err: err ?? new Error(`join returned ${String(result)}`), socketId: this.id, topic: msg.topic },
        'realtime: join crashed',
      );
      ch.teardown('crash');
      this.replyToJoin(msg, 'error', JOIN_CRASHED, old);
    } else if (result.status === 'ok') {
      this.ctx.counters.joins++;
      this.ctx.counters.channels++;
      this.channels.set(msg.topic, ch);
      const early = ch.markJoined();
      this.replyToJoin(msg, 'ok', result.response ?? EMPTY, old);
      if (early !== null) for (const f of early) this.write(f);
      ch.resume();
    } else {
      this.ctx.counters.joinErrors++;
      ch.teardown('join_refused');
      this.replyToJoin(msg, 'error', result.response ?? EMPTY, old);
    }
    if (this.joining) {
      this.joining = false;
      this.joiningMsg = null;
      this.dispatchHeldFrames();
    }
  }

  /** The join's reply, then phx_close to the instance it replaced (a rejoin of the same topic). */
  private replyToJoin(
    msg: InboundMessage,
    status: 'ok' | 'error',
    response: Payload,
    old: ChannelInstance | undefined,
  ): void {
    this.answerJoin(msg, msg.joinRef, status, response);
    if (old !== undefined) this.sendClose(old);
  }

  /** After an async join settled: the frames held back behind it, in order, until another async join starts. */
  private dispatchHeldFrames(): void {
    const queued = this.inbox;
    this.inbox = null;
    if (queued !== null) {
      for (let i = 0; i < queued.length; i++) {
        if (this.closed) return;
        if (this.inbox !== null) {
          // Another async join started: the rest waits behind it.
          (this.inbox as InboundMessage[]).push(...queued.slice(i));
          return;
        }
        try {
          this.dispatch(queued[i]!);
        } catch (err) {
          this.ctx.logger.error({ err, socketId: this.id }, 'realtime: frame handling failed, closing socket');
          this.close(CloseCode.serverError, 'internal error');
          return;
        }
      }
    }
    this.releaseIdleWaiter();
  }

  /** Settles once no async join is holding frames back (null if none is). Long-poll waits on it. */
  get pendingJoin(): Promise<void> | null {
    if (this.inbox === null) return null;
    if (this.idleWaiter === null) {
      let resolve!: () => void;
      const promise = new Promise<void>((r) => {
        resolve = r;
      });
      this.idleWaiter = { promise, resolve };
    }
    return this.idleWaiter.promise;
  }

  private releaseIdleWaiter(): void {
    const w = this.idleWaiter;
    if (w !== null && this.inbox === null) {
      this.idleWaiter = null;
      w.resolve();
    }
  }

  /**
   * The join's reply. A channel taken over from another node is joined again without one (its
   * client had it there); refused here, it gets phx_error, on which clients rejoin by themselves.
   */
  private answerJoin(msg: InboundMessage, replyJoinRef: Ref, status: 'ok' | 'error', response: Payload): void {
    const { topic } = msg;
    if (!this.quietJoins.has(msg)) {
      this.send({ kind: 'reply', joinRef: replyJoinRef, ref: msg.ref, topic, status, response });
      return;
    }
    if (status === 'ok') return;
    this.ctx.logger.warn({ socketId: this.id, topic, response }, 'realtime: a taken-over channel could not join again');
    const payload = { reason: 'rejoin failed' };
    this.send({ kind: 'push', joinRef: msg.joinRef, ref: msg.joinRef, topic, event: 'phx_error', payload });
  }

  // ---- the seam for moving a connection to another node (long-poll handover) ------------------

  /** The client frames received but not handled yet (a join running, frames queued behind it), in order. */
  unhandled(): UnhandledFrame[] {
    const held = [...(this.joiningMsg ? [this.joiningMsg] : []), ...(this.inbox ?? [])];
    return held.map((msg) => ({ msg, quiet: this.quietJoins.has(msg) }));
  }

  /**
   * Handles `msg` as if the client had sent it. A `quiet` join sends no reply (its client had one
   * elsewhere); refused here, it gets phx_error, on which clients rejoin by themselves.
   */
  inject(msg: InboundMessage, quiet = false): void {
    if (quiet && msg.event === 'phx_join') this.quietJoins.add(msg);
    this.receive(msg);
  }

  private sendClose(old: ChannelInstance): void {
    this.send({
      kind: 'push',
      joinRef: old.frameJoinRef,
      ref: old.frameJoinRef,
      topic: old.topic,
      event: 'phx_close',
      payload: EMPTY,
    });
  }

  // ---- ChannelHost -----------------------------------------------------------------------

  channelEnded(ch: ChannelInstance, reason: string): void {
    if (this.channels.get(ch.topic) === ch) {
      this.channels.delete(ch.topic);
      this.ctx.counters.channels--;
    }
    if (reason === 'crash') this.ctx.counters.channelCrashes++;
  }

  encode(msg: OutboundMessage): EncodedFrame {
    return this.serializer.encode(msg);
  }

  write(frame: EncodedFrame): void {
    if (this.closed) return;
    this.ctx.counters.messagesOut++;
    this.transport.write(frame);
  }

  send(msg: OutboundMessage): void {
    if (this.closed) return;
    this.write(this.serializer.encode(msg));
  }

  writeFanout(f: Fanout): void {
    if (this.closed) return;
    this.ctx.counters.messagesOut++;
    this.transport.writeFanout(f, this.serializer);
  }

  /** Subscriber for the socket-id topic: a "disconnect" broadcast ends the connection with 1001. */
  deliver(f: Fanout): void {
    if (f.message.event === 'disconnect') this.close(CloseCode.goingAway, 'disconnected');
  }

  // ---- lifecycle -------------------------------------------------------------------------

  /**
   * Closes the connection when its credentials expire (ms since the epoch): close 1008
   * "token expired" (a long-poll session ends), on which clients reconnect with fresh ones.
   */
  expireAt(at: number): void {
    this.expiresAt = at;
    if (this.expiryTimer !== null) clearTimeout(this.expiryTimer);
    // setTimeout holds at most ~24.8 days; a later expiry re-arms on the way.
    const ms = Math.min(Math.max(0, at - Date.now()), MAX_TIMER_MS);
    this.expiryTimer = setTimeout(() => {
      this.expiryTimer = null;
      if (Date.now() < at) return this.expireAt(at);
      this.logger.info({ socketId: this.id, transport: this.transportKind }, 'realtime: credentials expired');
      this.close(CloseCode.policyViolation, 'token expired');
    }, ms);
    this.expiryTimer.unref();
  }

  close(code: number, reason: string): void {
    if (this.closed || this.closing) return;
    this.closing = true;
    this.transport.close(code, reason);
  }

  /** The transport is gone: end every channel (their presences leave) and unregister. */
  transportClosed(reason = 'closed'): void {
    if (this.closed) return;
    this.closed = true;
    this.inbox = null;
    if (this.expiryTimer !== null) clearTimeout(this.expiryTimer);
    this.expiryTimer = null;
    this.releaseIdleWaiter();
    if (this.id !== null) this.ctx.pubsub.unsubscribe(this.id, this);
    for (const ch of Array.from(this.channels.values())) ch.teardown(reason);
    this.ctx.connectionClosed(this);
  }
}
