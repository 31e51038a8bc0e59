/**
 * The channel contract (what an application implements, like Phoenix.Channel) and the
 * per-join object handed to it.
 */
import { assertPushPayload, type OutboundMessage, type Payload, type Ref } from './message';
import type { EncodedFrame } from './serializer';
import type { Params } from './params';
import type { Fanout, PubSub, Subscriber } from './pubsub';
import type { RealtimeLogger } from './logger';
import type { TransportKind } from './transport';

export type Assigns = Record<string, unknown>;

/** What `join` returns: accept (optionally with a reply payload) or refuse with a reason. */
export type JoinResult = { status: 'ok'; response?: Payload } | { status: 'error'; response?: Payload };

/** What `handleIn` may return: nothing (no reply), a reply, or a graceful stop. */
export type HandleInResult =
  void | undefined | { reply: string; response?: Payload } | { stop: string; reply?: string; response?: Payload };

/** What `handleInfo` / `handleOut` may return. */
export type HandleInfoResult = void | undefined | { stop: string };

/**
 * Why a channel ended, passed to `terminate`:
 * `left` (client phx_leave), `closed` (transport gone), `duplicate_join`, `crash` (a callback threw),
 * `shutdown` (server drain/close), or the reason given to `stop`.
 */
export type TerminateReason = string;

/** A message delivered to `handleInfo` when a channel subscribed to an extra topic. */
export interface InfoBroadcast {
  topic: string;
  event: string;
  payload: Payload;
}

export interface Channel<A extends Assigns = Assigns> {
  /** Authorise and set up. Pushes made here are sent after the join reply. Throwing ⇒ "join crashed". */
  join(topic: string, payload: Payload, socket: ChannelSocket<A>): JoinResult | Promise<JoinResult>;
  /** An event pushed by the client. `payload` is a Buffer for V2 binary pushes. `ref` is for later `socket.reply`. */
  handleIn?(
    event: string,
    payload: Payload,
    socket: ChannelSocket<A>,
    ref: Ref,
  ): HandleInResult | Promise<HandleInResult>;
  /** Messages sent with `socket.send(msg)` and broadcasts on topics added with `socket.subscribe`. */
  handleInfo?(msg: unknown, socket: ChannelSocket<A>): HandleInfoResult | Promise<HandleInfoResult>;
  /** Broadcast events to route through `handleOut` instead of straight to the client (Phoenix intercept). */
  intercept?: readonly string[];
  handleOut?(event: string, payload: Payload, socket: ChannelSocket<A>): HandleInfoResult | Promise<HandleInfoResult>;
  /**
   * The join payload with which another node joins this channel again when the client's long-poll
   * session is handed over to it (its node stops gracefully). Default: the client's own join
   * payload. A channel that tracks what it delivered puts that position in (a task channel's
   * `last_seq`), so the new node sends what follows and nothing twice.
   */
  rejoinPayload?(joinPayload: Payload, socket: ChannelSocket<A>): Payload;
  /** Called once when a joined channel ends, whatever the reason (not after a refused or crashed join). Errors are logged. */
  terminate?(reason: TerminateReason, socket: ChannelSocket<A>): void | Promise<void>;
}

/** What a channel sees of its connection: one per joined topic. */
export interface ChannelSocket<A extends Assigns = Assigns> {
  readonly topic: string;
  /** The join's join_ref, or its ref when the join frame had none (as Phoenix's socket.join_ref). */
  readonly joinRef: Ref;
  /** A shallow copy of the connection's assigns, taken at join; mutate freely. */
  assigns: A;
  /** The connection's id from `connect` (null if none). */
  readonly socketId: string | null;
  readonly transport: TransportKind;
  /** The connect params (query string). */
  readonly params: Params;
  /** True until the channel has ended. */
  readonly alive: boolean;
  /** Pushes an event to this client only. Throws if the payload cannot be encoded (e.g. binary field > 255 bytes). */
  push(event: string, payload: Payload): void;
  /** Replies later to the client push with `ref` (the 4th argument of handleIn). */
  reply(ref: Ref, status: string, response?: Payload): void;
  /** Broadcasts to every subscriber of this topic, on every node. */
  broadcast(event: string, payload: Payload): void;
  /** Same, except this channel. */
  broadcastFrom(event: string, payload: Payload): void;
  /** Routes broadcasts on another topic to `handleInfo` while this channel lives. */
  subscribe(topic: string): void;
  unsubscribe(topic: string): void;
  /** Queues `msg` for `handleInfo` (like `send(self(), msg)`), after anything already queued. */
  send(msg: unknown): void;
  /** Ends the channel gracefully: the client gets phx_close and will not rejoin. */
  stop(reason?: string): void;
  /** Registers cleanup to run when the channel ends (used by Presence). */
  onTerminate(fn: () => void): void;
}

/** The part of a connection a channel instance needs. Implemented by Connection. */
export interface ChannelHost {
  readonly id: string | null;
  readonly params: Params;
  readonly transportKind: TransportKind;
  readonly pubsub: PubSub;
  readonly logger: RealtimeLogger;
  /** Encodes with the connection's serializer; throws if it cannot carry the message. */
  encode(msg: OutboundMessage): EncodedFrame;
  write(frame: EncodedFrame): void;
  send(msg: OutboundMessage): void;
  writeFanout(f: Fanout): void;
  channelEnded(ch: ChannelInstance, reason: string): void;
  /** Too much client work queued: the connection closes. */
  overloaded(what: string): void;
}

type MailItem =
  | { k: 'in'; event: string; payload: Payload; ref: Ref }
  | { k: 'leave'; ref: Ref }
  | { k: 'info'; msg: unknown }
  | { k: 'out'; event: string; payload: Payload };

const enum State {
  Joining,
  Joined,
  Closed,
}

function isThenable<T>(v: unknown): v is PromiseLike<T> {
  return v !== null && typeof v === 'object' && typeof (v as { then?: unknown }).then === 'function';
}

const EMPTY = Object.freeze({}) as Record<string, never>;

/**
 * One joined channel on one connection. Client events, info messages and intercepted broadcasts
 * are handled one at a time in arrival order, like a Phoenix channel process's mailbox.
 */
export class ChannelInstance implements ChannelSocket, Subscriber {
  readonly topic: string;
  readonly joinRef: Ref;
  /**
   * The join_ref exactly as the join frame carried it (null for V1 clients and for a join sent
   * without one). Phoenix's socket keeps this one: it decides which client frames are stale and
   * is the join_ref (and ref) of the phx_close and phx_error that end the channel.
   */
  readonly frameJoinRef: Ref;
  assigns: Assigns;
  /** The payload of the join frame (see {@link Channel.rejoinPayload}). */
  joinPayload: Payload = EMPTY;
  private readonly host: ChannelHost;
  readonly handler: Channel;
  private state: State = State.Joining;
  private busy = false;
  private mailbox: MailItem[] | null = null;
  /** Pushes made during join, sent after the join reply. */
  private early: EncodedFrame[] | null = null;
  private extraTopics: Set<string> | null = null;
  /** Broadcasts that arrived while join was running. */
  private held: Fanout[] | null = null;
  private subscribed = false;
  private cleanups: (() => void)[] | null = null;
  private readonly intercepts: readonly string[] | null;

  constructor(host: ChannelHost, topic: string, frameJoinRef: Ref, ref: Ref, handler: Channel, assigns: Assigns) {
    this.host = host;
    this.topic = topic;
    this.frameJoinRef = frameJoinRef;
    this.joinRef = frameJoinRef ?? ref;
    this.handler = handler;
    this.assigns = { ...assigns };
    this.intercepts = handler.intercept && handler.intercept.length > 0 && handler.handleOut ? handler.intercept : null;
  }

  get socketId(): string | null {
    return this.host.id;
  }
  get transport(): TransportKind {
    return this.host.transportKind;
  }
  get params(): Params {
    return this.host.params;
  }
  get alive(): boolean {
    return this.state !== State.Closed;
  }

  /**
   * Called by the connection before `join` runs. Subscribes first, so nothing broadcast during
   * an async join is lost: such broadcasts are held and delivered after the join reply and the
   * pushes made in join.
   */
  beginJoin(): void {
    this.subscribed = true;
    this.host.pubsub.subscribe(this.topic, this);
  }

  /** Called by the connection once join returned ok: returns the pushes made during join, to send after the reply. */
  markJoined(): EncodedFrame[] | null {
    this.state = State.Joined;
    const early = this.early;
    this.early = null;
    return early;
  }

  push(event: string, payload: Payload): void {
    assertPushPayload(payload, 'push');
    if (this.state === State.Closed) return;
    const msg: OutboundMessage = { kind: 'push', joinRef: this.joinRef, ref: null, topic: this.topic, event, payload };
    if (this.state === State.Joining) {
      // Encode now so the caller sees encoding errors where it pushed.
      (this.early ??= []).push(this.host.encode(msg));
      return;
    }
    this.host.send(msg);
  }

  reply(ref: Ref, status: string, response: Payload = EMPTY): void {
    assertPushPayload(response, 'reply');
    if (this.state === State.Closed) return;
    this.host.send({ kind: 'reply', joinRef: this.joinRef, ref, topic: this.topic, status, response });
  }

  broadcast(event: string, payload: Payload): void {
    this.host.pubsub.broadcast(this.topic, event, payload, null);
  }

  broadcastFrom(event: string, payload: Payload): void {
    this.host.pubsub.broadcast(this.topic, event, payload, this);
  }

  subscribe(topic: string): void {
    if (this.state === State.Closed || topic === this.topic) return;
    (this.extraTopics ??= new Set()).add(topic);
    this.host.pubsub.subscribe(topic, this);
  }

  unsubscribe(topic: string): void {
    if (!this.extraTopics?.delete(topic)) return;
    this.host.pubsub.unsubscribe(topic, this);
  }

  send(msg: unknown): void {
    if (this.state === State.Closed) return;
    this.enqueue({ k: 'info', msg });
  }

  stop(reason = 'normal'): void {
    if (this.state === State.Closed) return;
    this.close(reason);
  }

  onTerminate(fn: () => void): void {
    if (this.state === State.Closed) {
      fn();
      return;
    }
    (this.cleanups ??= []).push(fn);
  }

  /** How another node joins this channel again (a handed-over long-poll session). */
  rejoinPayload(): Payload {
    if (!this.handler.rejoinPayload) return this.joinPayload;
    try {
      return this.handler.rejoinPayload(this.joinPayload, this);
    } catch (err) {
      this.host.logger.error({ err, topic: this.topic }, 'realtime: rejoinPayload failed; the join payload is used');
      return this.joinPayload;
    }
  }

  /** Called by the connection after the join reply went out: handle what queued up meanwhile. */
  resume(): void {
    const held = this.held;
    this.held = null;
    if (held !== null) for (const f of held) this.deliver(f);
    if (!this.busy && this.state === State.Joined) this.next();
  }

  /** Pubsub delivery. */
  deliver(f: Fanout): void {
    if (this.state !== State.Joined) {
      if (this.state === State.Joining) (this.held ??= []).push(f);
      return;
    }
    const m = f.message;
    if (m.topic !== this.topic) {
      this.enqueue({ k: 'info', msg: { topic: m.topic, event: m.event, payload: m.payload } satisfies InfoBroadcast });
    } else if (this.intercepts !== null && this.intercepts.includes(m.event)) {
      this.enqueue({ k: 'out', event: m.event, payload: m.payload });
    } else {
      this.host.writeFanout(f);
    }
  }

  /** A client event for this channel (join_ref already checked). */
  handleIn(event: string, payload: Payload, ref: Ref): void {
    if (this.mailbox !== null && this.mailbox.length >= 1000) {
      this.host.overloaded(`client events queued on ${this.topic}`);
      return;
    }
    this.enqueue({ k: 'in', event, payload, ref });
  }

  leave(ref: Ref): void {
    this.enqueue({ k: 'leave', ref });
  }

  private enqueue(item: MailItem): void {
    // While joining, messages wait (like `send(self(), :after_join)` in Phoenix, handled after join returns).
    if (this.busy || this.state === State.Joining) {
      (this.mailbox ??= []).push(item);
      return;
    }
    this.run(item);
  }

  private run(item: MailItem): void {
    while (this.state !== State.Closed) {
      let result: unknown;
      try {
        result = this.dispatch(item);
      } catch (err) {
        this.crash(err, item);
        return;
      }
      if (isThenable(result)) {
        this.busy = true;
        const current = item;
        result.then(
          (r) => {
            this.busy = false;
            if (this.settle(current, r)) this.safely(() => this.next());
          },
          (err: unknown) => {
            this.busy = false;
            this.safely(() => this.crash(err, current));
          },
        );
        return;
      }
      if (!this.settle(item, result)) return;
      const nextItem = this.mailbox?.shift();
      if (nextItem === undefined) return;
      item = nextItem;
    }
  }

  /** For promise callbacks: an error here must not become an unhandled rejection. */
  private safely(fn: () => void): void {
    try {
      fn();
    } catch (err) {
      try {
        this.host.logger.error({ err, topic: this.topic }, 'realtime: channel internal error');
      } catch {
        /* a throwing logger must not take the process down either */
      }
      this.teardown('crash');
    }
  }

  private next(): void {
    const item = this.mailbox?.shift();
    if (item !== undefined) this.run(item);
  }

  private dispatch(item: MailItem): unknown {
    switch (item.k) {
      case 'in':
        if (!this.handler.handleIn)
          throw new Error(`channel for ${this.topic} has no handleIn for event ${JSON.stringify(item.event)}`);
        return this.handler.handleIn(item.event, item.payload, this, item.ref);
      case 'info':
        if (!this.handler.handleInfo) {
          this.host.logger.warn({ topic: this.topic }, 'realtime: message for a channel without handleInfo dropped');
          return undefined;
        }
        return this.handler.handleInfo(item.msg, this);
      case 'out':
        return this.handler.handleOut!(item.event, item.payload, this);
      case 'leave':
        return undefined;
    }
  }

  /** Applies a callback's result; false if that crashed the channel (e.g. a reply that is not an object). */
  private settle(item: MailItem, r: unknown): boolean {
    try {
      this.afterResult(item, r);
      return true;
    } catch (err) {
      this.crash(err, item);
      return false;
    }
  }

  private afterResult(item: MailItem, r: unknown): void {
    if (this.state === State.Closed) return;
    if (item.k === 'leave') {
      this.reply(item.ref, 'ok', EMPTY);
      this.close('left');
      return;
    }
    if (r === undefined || r === null || typeof r !== 'object') return;
    const res = r as { reply?: unknown; response?: Payload; stop?: unknown };
    if (item.k === 'in' && typeof res.reply === 'string') this.reply(item.ref, res.reply, res.response ?? EMPTY);
    if (typeof res.stop === 'string') this.close(res.stop);
  }

  /** Graceful end: phx_close to the client, then teardown. */
  close(reason: string): void {
    if (this.state === State.Closed) return;
    const joinRef = this.frameJoinRef;
    this.host.send({ kind: 'push', joinRef, ref: joinRef, topic: this.topic, event: 'phx_close', payload: EMPTY });
    this.teardown(reason);
  }

  /** A callback threw: phx_error to this topic only, then teardown; the connection lives on. */
  crash(err: unknown, item?: MailItem): void {
    if (this.state === State.Closed) return;
    this.host.logger.error(
      { err, topic: this.topic, event: item && 'event' in item ? item.event : item?.k },
      'realtime: channel crashed',
    );
    const joinRef = this.frameJoinRef;
    this.host.send({
      kind: 'push',
      joinRef,
      ref: joinRef,
      topic: this.topic,
      event: 'phx_error',
      payload: { reason: 'channel_crash' },
    });
    this.teardown('crash');
  }

  /** Ends without telling the client (transport gone, duplicate join, drain). */
  teardown(reason: string): void {
    if (this.state === State.Closed) return;
    // Like Phoenix, terminate runs only for channels whose join succeeded.
    const wasJoined = this.state === State.Joined;
    this.state = State.Closed;
    this.mailbox = null;
    this.early = null;
    this.held = null;
    if (this.subscribed) this.host.pubsub.unsubscribe(this.topic, this);
    this.subscribed = false;
    if (this.extraTopics) for (const t of this.extraTopics) this.host.pubsub.unsubscribe(t, this);
    this.extraTopics = null;
    const cleanups = this.cleanups;
    this.cleanups = null;
    if (cleanups)
      for (const fn of cleanups) {
        try {
          fn();
        } catch (err) {
          this.host.logger.error({ err, topic: this.topic }, 'realtime: channel cleanup failed');
        }
      }
    this.host.channelEnded(this, reason);
    if (wasJoined && this.handler.terminate) {
      try {
        const r = this.handler.terminate(reason, this);
        if (isThenable(r))
          r.then(undefined, (err: unknown) =>
            this.host.logger.error({ err, topic: this.topic }, 'realtime: terminate failed'),
          );
      } catch (err) {
        this.host.logger.error({ err, topic: this.topic }, 'realtime: terminate failed');
      }
    }
  }
}
