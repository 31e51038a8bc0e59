/**
 * The long-poll transport (Phoenix.Transports.LongPoll), used by phoenix.js as a fallback.
 * Every answer is HTTP 200 with a JSON body whose `status` field carries the meaning.
 *
 * A session lives in the memory of the node that created it. Its token is signed and names
 * that node, so on a cluster any node can serve the session's requests: it forwards the POST or
 * the poll over the {@link ClusterBus} to the owner and relays the answer, as Phoenix forwards
 * them over its PubSub. A request whose owner does not answer gets what Phoenix answers
 * (GET: a new session, 410 with a new token; POST: 410), on which phoenix.js reconnects and
 * rejoins its channels.
 *
 * Beyond Phoenix (whose sessions die with their node): a node that stops gracefully (drain)
 * hands each session to a live node, which connects it again (`connect` on the session's first
 * request), joins its channels again without a word to the client (each channel says from where:
 * a task channel from the last seq it sent) and takes over its undelivered messages. The old
 * node answers the held poll with a token naming the new node (phoenix.js takes every poll
 * answer's token) and tells every node where the session went, so a request still carrying the
 * old token is forwarded there. The client sees one uninterrupted session.
 */
import { createHmac, randomBytes, timingSafeEqual } from 'node:crypto';
import type { IncomingMessage, ServerResponse } from 'node:http';
import type { BusMessage, ClusterBus } from './bus';
import type { Connection } from './connection';
import type { HandedOver } from './connection';
import type { ConnectRequest, HostedTransport, TransportHost } from './host';
import type { InboundMessage } from './message';
import type { Fanout } from './pubsub';
import type { EncodedFrame, Serializer } from './serializer';
import { requestTarget } from './params';

export interface LongPollOptions {
  /** How long a poll is held open when nothing is queued (Phoenix window_ms, default 10 000). */
  windowMs?: number;
  /** A session with no request for this long is stopped (default 1.5 × windowMs). */
  sessionTimeoutMs?: number;
  /** Largest POST body (default 1 MiB). */
  maxBodyBytes?: number;
  /** Lines handled per ndjson POST (default 100, as Phoenix); further lines are ignored. */
  maxMessagesPerPost?: number;
  /**
   * Key that signs session tokens (HMAC-SHA256). Every node of a cluster must use the same one.
   * Default: a random key per process (then only this process accepts its tokens).
   */
  secret?: string | Buffer;
  /** Reaches the other nodes: with it, a session's requests may land on any node. Needs `secret`. */
  bus?: ClusterBus;
  /** How long a forwarding node waits for the owner's first answer before it deems it gone (default 2000, as Phoenix's pubsub_timeout_ms). */
  busTimeoutMs?: number;
}

/** The JSON body of every long-poll answer. */
interface LpBody {
  status: number;
  token?: string;
  messages?: string[];
}

/** Where a poll's answer goes: the HTTP response here, or a bus message to the forwarding node. */
type PollAnswer = (body: LpBody) => void;

/** A session as its node hands it to another (the `adopt` bus message). */
interface HandedSession extends HandedOver {
  request: ConnectRequest;
  /** Messages not yet delivered to the client. */
  queue: string[];
}

/** After the first node answers "who is up?", how long a stopping node waits for more. */
const PROBE_SETTLE_MS = 200;
/** How long nodes remember where a session went (its client takes the new token at its next poll). */
const MOVED_TTL_MS = 5 * 60_000;
/** How often a forwarded request may be sent on to the session's newer node. */
const MAX_HOPS = 3;

const JSON_HEADERS = {
  'content-type': 'application/json; charset=utf-8',
  'cache-control': 'no-store',
  'access-control-allow-origin': '*',
};

/** `closeConnection`: this node stops; the client's (or balancer's) next request goes on a new connection, to another node. */
function sendJson(res: ServerResponse, body: unknown, httpStatus = 200, closeConnection = false): void {
  if (res.writableEnded || res.destroyed) return;
  const text = JSON.stringify(body);
  res.writeHead(httpStatus, {
    ...JSON_HEADERS,
    'content-length': Buffer.byteLength(text),
    ...(closeConnection ? { connection: 'close' } : {}),
  });
  res.end(text);
}

const ID = /^[A-Za-z0-9_-]{1,64}$/;

/** `<node>.<session>.<mac>`: the node that holds the session, its random id, and their HMAC. */
class SessionTokens {
  private readonly key: Buffer;
  constructor(secret: string | Buffer) {
    this.key = Buffer.isBuffer(secret) ? secret : Buffer.from(secret, 'utf8');
  }
  private mac(node: string, sid: string): string {
    return createHmac('sha256', this.key).update(`${node}.${sid}`).digest('base64url');
  }
  sign(node: string, sid: string): string {
    return `${node}.${sid}.${this.mac(node, sid)}`;
  }
  /** The node and session a token names, or null if it is malformed or not signed with our key. */
  verify(token: string): { node: string; sid: string } | null {
    const [node, sid, mac, extra] = token.split('.');
    if (extra !== undefined || !node || !sid || !mac || !ID.test(node) || !ID.test(sid)) return null;
    const want = Buffer.from(this.mac(node, sid));
    const got = Buffer.from(mac);
    return got.length === want.length && timingSafeEqual(got, want) ? { node, sid } : null;
  }
}

/** One long-poll client: a connection whose writes queue until the next poll. */
export class LongPollSession implements HostedTransport {
  readonly kind = 'longpoll' as const;
  /** The random part of the token (the key in its endpoint's session map). */
  readonly sid: string;
  readonly token: string;
  conn!: Connection;
  private queue: string[] = [];
  private poll: PollAnswer | null = null;
  private pollTimer: NodeJS.Timeout | null = null;
  private flushScheduled = false;
  closed = false;
  /** What `connect` ran on: another node connects this session again when it takes it over. */
  request: ConnectRequest | null = null;
  /** While a session taken over from another node connects: POSTs wait for it. */
  ready: Promise<void> | null = null;
  private readonly owner: LongPollEndpoint;

  constructor(owner: LongPollEndpoint, sid: string, token: string) {
    this.owner = owner;
    this.sid = sid;
    this.token = token;
  }

  write(frame: EncodedFrame): void {
    if (this.closed) return;
    if (frame.binary) {
      // phoenix.js JSON-parses every long-poll message; binary cannot travel this way.
      this.owner.server.logger.warn(
        { socketId: this.conn?.id ?? null },
        'realtime: binary frame dropped on a long-poll session',
      );
      return;
    }
    this.queue.push(frame.data.toString('utf8'));
    this.scheduleAnswer();
  }

  writeFanout(f: Fanout, serializer: Serializer): void {
    let enc: EncodedFrame;
    try {
      enc = f.encode(serializer);
    } catch {
      return;
    }
    this.write(enc);
  }

  private scheduleAnswer(): void {
    if (this.poll !== null && !this.flushScheduled) {
      this.flushScheduled = true;
      setImmediate(() => {
        this.flushScheduled = false;
        this.answerPoll();
      });
    }
  }

  /** A GET with this session's token (here, or forwarded by another node). */
  listen(answer: PollAnswer): void {
    this.touch();
    if (this.poll !== null) this.finishPoll({ status: 204, token: this.token, messages: [] });
    if (this.queue.length > 0) {
      const messages = this.queue;
      this.queue = [];
      answer({ status: 200, token: this.token, messages });
      return;
    }
    this.poll = answer;
    this.pollTimer = setTimeout(
      () => this.finishPoll({ status: 204, token: this.token, messages: [] }),
      this.owner.windowMs,
    );
  }

  /** The poll's client went away before an answer: stop holding it; queued messages stay. */
  cancelPoll(answer: PollAnswer): void {
    if (this.poll === answer) this.clearPoll();
  }

  /** Messages a forwarding node could not hand over (its client left): they go out first next time. */
  requeue(messages: string[]): void {
    if (this.closed || messages.length === 0) return;
    this.queue = messages.concat(this.queue);
    this.scheduleAnswer();
  }

  private answerPoll(): void {
    if (this.poll === null || this.queue.length === 0) return;
    const messages = this.queue;
    this.queue = [];
    this.finishPoll({ status: 200, token: this.token, messages });
  }

  private finishPoll(body: LpBody): void {
    const answer = this.poll;
    this.clearPoll();
    answer?.(body);
    this.touch();
  }

  private clearPoll(): void {
    this.poll = null;
    if (this.pollTimer !== null) clearTimeout(this.pollTimer);
    this.pollTimer = null;
  }

  touch(): void {
    if (this.conn) this.conn.lastSeen = Date.now();
  }

  /** The messages not delivered yet, taken out (a handover carries them). */
  takeQueue(): string[] {
    const q = this.queue;
    this.queue = [];
    return q;
  }

  /**
   * Handed to another node (its connection already handed off): requests for it now go there.
   * A held poll is answered once that node has the session (`adopted`), with `token`, which
   * names that node, so the client's next requests go there directly.
   */
  async movedTo(token: string, adopted: Promise<void>): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    this.owner.sessions.delete(this.sid);
    this.queue = [];
    await adopted;
    this.finishPoll({ status: 204, token, messages: [] });
  }

  terminate(): void {
    this.close();
  }

  close(): void {
    if (this.closed) return;
    this.closed = true;
    this.owner.sessions.delete(this.sid);
    // A held poll learns the session is gone; phoenix.js then reconnects and rejoins.
    this.finishPoll({ status: 410 });
    this.queue = [];
    // undefined while a session taken over from another node connects
    (this.conn as Connection | undefined)?.transportClosed();
  }
}

/** A request this node forwarded to a session's owner, waiting for its answer. */
interface Forwarded {
  timer: NodeJS.Timeout;
  /** The request as sent (sent again, to a newer owner, when the session moved), and where. */
  message: BusMessage;
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

/** Serves `${path}/longpoll`: the sessions of this process, and forwarding to other nodes'. */
export class LongPollEndpoint {
  readonly server: TransportHost;
  readonly sessions = new Map<string, LongPollSession>();
  readonly windowMs: number;
  readonly sessionTimeoutMs: number;
  readonly maxBodyBytes: number;
  readonly maxMessagesPerPost: number;
  private readonly tokens: SessionTokens;
  private readonly bus: ClusterBus | null;
  private readonly nodeId: string;
  private readonly busTimeoutMs: number;
  /** Requests this node forwarded, by request id. */
  private readonly forwarded = new Map<string, Forwarded>();
  /** Polls other nodes forwarded here and this node holds, by request id (for cancel). */
  private readonly remotePolls = new Map<string, { session: LongPollSession; answer: PollAnswer }>();
  /** Sessions handed over (by any node): where each went, and when this node learnt it. */
  private readonly moved = new Map<string, { node: string; at: number }>();
  /** "Who is up?" questions of this node waiting for answers, by request id. */
  private readonly probes = new Map<string, (node: string) => void>();
  /** Sessions this node handed over, waiting for their new node to say it has them, by session id. */
  private readonly handing = new Map<string, () => void>();

  constructor(server: TransportHost, opts: LongPollOptions) {
    this.server = server;
    this.windowMs = opts.windowMs ?? 10_000;
    this.sessionTimeoutMs = opts.sessionTimeoutMs ?? Math.round(this.windowMs * 1.5);
    this.maxBodyBytes = opts.maxBodyBytes ?? 1024 * 1024;
    this.maxMessagesPerPost = opts.maxMessagesPerPost ?? 100;
    this.busTimeoutMs = opts.busTimeoutMs ?? 2000;
    this.bus = opts.bus ?? null;
    if (this.bus !== null && opts.secret === undefined)
      throw new Error('realtime: longpoll.bus needs longpoll.secret, the same on every node');
    if (this.bus !== null && !ID.test(this.bus.nodeId))
      throw new Error(`realtime: bus nodeId ${JSON.stringify(this.bus.nodeId)} must match ${ID.source}`);
    this.tokens = new SessionTokens(opts.secret ?? randomBytes(32));
    this.nodeId = this.bus?.nodeId ?? randomBytes(6).toString('hex');
    this.bus?.onMessage((m, from) => this.fromBus(m, from));
  }

  /** An answer; once this node drains, its connection is closed after it (keep-alive would bring the next request back here). */
  private send(res: ServerResponse, body: LpBody, httpStatus = 200): void {
    sendJson(res, body, httpStatus, this.server.isDraining);
  }

  get sessionCount(): number {
    return this.sessions.size;
  }

  get sweepIntervalMs(): number {
    return Math.max(25, Math.min(5000, this.sessionTimeoutMs / 3));
  }

  handle(req: IncomingMessage, res: ServerResponse): void {
    const method = req.method ?? 'GET';
    if (method === 'OPTIONS') {
      const reqHeaders = req.headers['access-control-request-headers'];
      res.writeHead(200, {
        ...JSON_HEADERS,
        'access-control-allow-headers': typeof reqHeaders === 'string' ? reqHeaders : '',
        'access-control-allow-methods': 'get, post, options',
        'access-control-max-age': '3600',
        'content-length': '0',
      });
      res.end();
      return;
    }
    if (method !== 'GET' && method !== 'POST') {
      res.writeHead(400, { 'content-length': '0' }).end();
      return;
    }
    if (!this.server.originAllowed(req)) {
      this.server.logger.warn({ origin: req.headers.origin, transport: 'longpoll' }, 'realtime: origin not allowed');
      this.send(res, { status: 403 });
      return;
    }
    const raw = this.tokenOf(req);
    const named = raw !== null ? this.tokens.verify(raw) : null;
    // A session held here: created here, or taken over from the node its token names.
    const session = named !== null ? this.sessions.get(named.sid) : undefined;
    const holder = named !== null ? (this.moved.get(named.sid)?.node ?? named.node) : null;
    const remote = named !== null && holder !== this.nodeId && this.bus !== null ? { ...named, node: holder! } : null;
    if (method === 'GET') {
      if (session !== undefined && !session.closed) this.listenHere(session, res);
      // Closed, this node holds no poll any more: "nothing yet", and the next one goes elsewhere.
      else if (remote !== null && this.server.isClosed) this.send(res, { status: 204, token: raw!, messages: [] });
      else if (remote !== null) this.forwardPoll(remote.node, remote.sid, req, res);
      else this.newSession(req, res);
      return;
    }
    if (session !== undefined && !session.closed) {
      session.touch();
      this.readBody(req, res, (body) => this.answerWhenHandled(res, this.publish(session, req.headers, body)));
    } else if (remote !== null) {
      this.readBody(req, res, (body) => this.forwardPost(remote.node, remote.sid, req, res, body));
    } else {
      // Drain the body so keep-alive connections stay usable.
      req.resume();
      this.send(res, { status: 410 });
    }
  }

  private tokenOf(req: IncomingMessage): string | null {
    const h = req.headers['x-phoenix-longpoll-token'];
    if (typeof h === 'string' && h) return h;
    const q = requestTarget(req).split('?')[1];
    if (!q) return null;
    let token: string | null = null;
    for (const seg of q.split('&')) {
      if (seg.startsWith('token=')) {
        try {
          token = decodeURIComponent(seg.slice(6).replace(/\+/g, ' '));
        } catch {
          token = null;
        }
      }
    }
    return token;
  }

  /** The request's `token` when it is a session token signed with our key (of any node). */
  private sessionTokenOf(req: IncomingMessage): string | null {
    const raw = this.tokenOf(req);
    return raw !== null && this.tokens.verify(raw) !== null ? raw : null;
  }

  private newSession(req: IncomingMessage, res: ServerResponse): void {
    const h = req.headers['x-phoenix-authtoken'];
    const authToken = typeof h === 'string' ? h : null;
    this.server
      .authorize(req, 'longpoll', authToken, null, this.sessionTokenOf(req))
      .then((a) => {
        if ('status' in a) {
          this.send(res, { status: 403 });
          return;
        }
        const sid = randomBytes(24).toString('base64url');
        const token = this.tokens.sign(this.nodeId, sid);
        const session = new LongPollSession(this, sid, token);
        session.request = a.request;
        this.sessions.set(sid, session);
        this.server.openConnection(session, a, this.sessionTimeoutMs);
        this.send(res, { status: 410, token, messages: [] });
      })
      .catch((err: unknown) => {
        this.server.logger.error({ err }, 'realtime: long-poll connect failed');
        this.send(res, { status: 500 });
      });
  }

  private listenHere(session: LongPollSession, res: ServerResponse): void {
    const answer: PollAnswer = (body) => this.send(res, body);
    session.listen(answer);
    res.on('close', () => session.cancelPoll(answer));
  }

  /** Reads a POST body up to `maxBodyBytes` (413 beyond), then calls `onBody`. */
  private readBody(req: IncomingMessage, res: ServerResponse, onBody: (body: Buffer) => void): void {
    const preRead = (req as { body?: unknown }).body;
    if (Buffer.isBuffer(preRead) || typeof preRead === 'string') {
      onBody(Buffer.from(preRead));
      return;
    }
    const chunks: Buffer[] = [];
    let size = 0;
    let tooBig = false;
    req.on('data', (c: Buffer) => {
      if (tooBig) return;
      size += c.length;
      if (size > this.maxBodyBytes) {
        tooBig = true;
        chunks.length = 0;
        this.server.counters.protocolErrors++;
        this.server.logger.warn({ size }, 'realtime: long-poll body too large');
        this.send(res, { status: 413 }, 413);
        return;
      }
      chunks.push(c);
    });
    req.on('end', () => {
      if (!tooBig) onBody(Buffer.concat(chunks));
    });
    req.on('error', () => res.destroy());
  }

  private answerWhenHandled(res: ServerResponse, result: LpBody | Promise<LpBody>): void {
    if (result instanceof Promise) result.then((b) => this.send(res, b));
    else this.send(res, result);
  }

  /** Hands a POST body's frames to the session; the answer once they are handled (Phoenix's). */
  private publish(
    session: LongPollSession,
    headers: { 'content-type'?: string | undefined },
    body: Buffer,
  ): LpBody | Promise<LpBody> {
    if (session.ready !== null) {
      // Taken over from another node and still connecting: the frames wait for it.
      return session.ready.then(() => (session.closed ? { status: 410 } : this.publish(session, headers, body)));
    }
    session.touch();
    const ctype = String(headers['content-type'] ?? '');
    const conn = session.conn;
    if (ctype.startsWith('application/x-ndjson')) {
      let lines = body.toString('utf8').split(/\r?\n/);
      if (lines.length > this.maxMessagesPerPost) {
        // Phoenix 1.8 handles the first 100 lines of a POST and ignores the rest.
        this.server.logger.warn(
          { socketId: conn.id, lines: lines.length, max: this.maxMessagesPerPost },
          'realtime: long-poll POST has too many lines; the rest are ignored',
        );
        lines = lines.slice(0, this.maxMessagesPerPost);
      }
      for (const line of lines) {
        if (conn.closed) break;
        // An empty line (a body ending in "\n") is no message: skipped (Phoenix's session crashes).
        if (line.length === 0) continue;
        const text = line.startsWith('[');
        const data = Buffer.from(line, text ? 'utf8' : 'base64');
        if (data.length > this.server.maxFrameBytes) this.tooBig(session);
        else conn.handleFrame(data, !text);
      }
    } else if (body.length > this.server.maxFrameBytes) {
      this.tooBig(session);
    } else {
      conn.handleFrame(body, false);
    }
    // Phoenix answers once the session process has handled the frames; a join still running
    // after window_ms yields 408.
    const pending = conn.pendingJoin;
    if (pending === null) return { status: 200 };
    return new Promise<LpBody>((resolve) => {
      const timer = setTimeout(() => resolve({ status: 408 }), this.windowMs);
      void pending.then(() => {
        clearTimeout(timer);
        resolve({ status: 200 });
      });
    });
  }

  private tooBig(session: LongPollSession): void {
    this.server.counters.protocolErrors++;
    this.server.logger.warn(
      { socketId: session.conn.id },
      'realtime: long-poll frame larger than maxFrameBytes dropped',
    );
  }

  // ---- forwarding to the owner (this node is not it) ----------------------------------------

  /**
   * Sends a request to `node` and calls `done` with its answer, or with null when the owner gave
   * no sign of life within busTimeoutMs (or none of an answer within windowMs after it did).
   */
  private forward(
    node: string,
    req: BusMessage,
    done: (body: LpBody | null) => void,
    onClose: LpBody | null = null,
  ): string {
    const rid = randomBytes(12).toString('base64url');
    let resolveSettled!: () => void;
    const settled = new Promise<void>((r) => {
      resolveSettled = r;
    });
    const entry: Forwarded = {
      timer: setTimeout(() => this.settle(rid, null), this.busTimeoutMs),
      message: req,
      node,
      hops: 0,
      done,
      onClose,
      settled,
      resolveSettled,
    };
    this.forwarded.set(rid, entry);
    this.sendTo(node, { ...req, t: 'req', rid });
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
    entry.timer = setTimeout(() => this.settle(rid, null), this.busTimeoutMs);
    entry.node = node;
    this.sendTo(node, { ...entry.message, t: 'req', rid });
  }

  /** A bus message; to this node itself, handled here (a session moved here while a request was on its way). */
  private sendTo(node: string, message: BusMessage): void {
    if (node === this.nodeId) setImmediate(() => this.fromBus(message, this.nodeId));
    else this.bus!.send(node, message);
  }

  private settle(rid: string, body: LpBody | null): void {
    const entry = this.forwarded.get(rid);
    if (entry === undefined) return;
    this.forwarded.delete(rid);
    clearTimeout(entry.timer);
    // The client loses its session (it reconnects and rejoins): worth seeing at the default level.
    if (body === null) this.server.logger.warn({ rid }, 'realtime: long-poll session owner did not answer');
    entry.resolveSettled();
    entry.done(body);
  }

  private forwardPoll(node: string, sid: string, req: IncomingMessage, res: ServerResponse): void {
    let open = true;
    const token = this.tokenOf(req);
    const rid = this.forward(
      node,
      { kind: 'poll', sid },
      (body) => {
        open = false;
        if (body === null) this.newSession(req, res);
        else this.send(res, body);
      },
      { status: 204, token: token ?? undefined, messages: [] },
    );
    res.on('close', () => {
      const entry = this.forwarded.get(rid);
      if (!open || entry === undefined) return;
      // The client left while the owner holds its poll: release it there, keep the messages.
      this.settle(rid, { status: 204 });
      this.sendTo(entry.node, { t: 'cancel', rid });
    });
  }

  private forwardPost(node: string, sid: string, req: IncomingMessage, res: ServerResponse, body: Buffer): void {
    const ctype = req.headers['content-type'];
    this.forward(node, { kind: 'post', sid, ctype: ctype ?? null, body: body.toString('base64') }, (answer) =>
      this.send(res, answer ?? { status: 410 }),
    );
  }

  // ---- the bus ------------------------------------------------------------------------------

  private fromBus(m: BusMessage, from: string): void {
    try {
      if (m.t === 'adopt') {
        this.adopt(m, from);
        return;
      }
      if (m.t === 'moved' && typeof m.sid === 'string' && typeof m.node === 'string') this.learnMoved(m.sid, m.node);
      if (m.t === 'adopted' && typeof m.sid === 'string') {
        this.handing.get(m.sid)?.();
        return;
      }
      const rid = typeof m.rid === 'string' ? m.rid : null;
      if (rid === null) return;
      switch (m.t) {
        case 'who':
          // A node stopping looks for nodes to take its sessions: one that stops too takes none.
          if (!this.server.isDraining) this.sendTo(from, { t: 'here', rid });
          return;
        case 'here':
          this.probes.get(rid)?.(from);
          return;
        case 'moved':
          if (typeof m.node === 'string') this.forwardAgain(rid, m.node);
          return;
        case 'req':
          this.servePeer(m, rid, from);
          return;
        case 'ack': {
          // The owner is alive and holds the request: wait for its answer a window longer.
          const entry = this.forwarded.get(rid);
          if (entry === undefined) return;
          clearTimeout(entry.timer);
          entry.timer = setTimeout(() => this.settle(rid, null), this.windowMs + this.busTimeoutMs);
          return;
        }
        case 'res': {
          const body = m.body as LpBody | null;
          if (body === null || typeof body !== 'object' || typeof body.status !== 'number') return;
          if (this.forwarded.has(rid)) this.settle(rid, body);
          // Too late (the client left): give the messages back so the next poll carries them.
          else if (Array.isArray(body.messages) && body.messages.length > 0)
            this.sendTo(from, { t: 'requeue', rid, sid: m.sid, messages: body.messages });
          return;
        }
        case 'gone':
          this.settle(rid, null);
          return;
        case 'cancel': {
          const held = this.remotePolls.get(rid);
          this.remotePolls.delete(rid);
          held?.session.cancelPoll(held.answer);
          return;
        }
        case 'requeue': {
          const session = typeof m.sid === 'string' ? this.sessions.get(m.sid) : undefined;
          if (session !== undefined && Array.isArray(m.messages))
            session.requeue(m.messages.filter((x): x is string => typeof x === 'string'));
          return;
        }
      }
    } catch (err) {
      this.server.logger.error({ err, from }, 'realtime: long-poll bus message failed');
    }
  }

  /** Another node forwards a request for one of our sessions. */
  private servePeer(m: BusMessage, rid: string, from: string): void {
    const sid = typeof m.sid === 'string' ? m.sid : '';
    const session = this.sessions.get(sid);
    if (session === undefined || session.closed) {
      const moved = this.moved.get(sid);
      if (moved !== undefined && moved.node !== from && moved.node !== this.nodeId)
        this.sendTo(from, { t: 'moved', rid, sid, node: moved.node });
      else this.sendTo(from, { t: 'gone', rid });
      return;
    }
    const reply = (body: LpBody): void => this.sendTo(from, { t: 'res', rid, sid, body });
    if (m.kind === 'poll') {
      let answered = false;
      const answer: PollAnswer = (body) => {
        answered = true;
        this.remotePolls.delete(rid);
        reply(body);
      };
      session.listen(answer);
      if (!answered) {
        this.remotePolls.set(rid, { session, answer });
        this.sendTo(from, { t: 'ack', rid });
      }
      return;
    }
    if (m.kind === 'post' && typeof m.body === 'string') {
      const ctype = typeof m.ctype === 'string' ? m.ctype : undefined;
      const result = this.publish(session, { 'content-type': ctype }, Buffer.from(m.body, 'base64'));
      if (result instanceof Promise) {
        this.sendTo(from, { t: 'ack', rid });
        void result.then(reply);
      } else {
        reply(result);
      }
    }
  }

  // ---- handing sessions over (a graceful stop) ------------------------------------------------

  /**
   * Moves every session to the live nodes that answer (round robin), before this node stops.
   * Returns how many moved; with no other node up, none do (they end with the node, as in Phoenix).
   */
  async handOver(): Promise<number> {
    const sessions = Array.from(this.sessions.values()).filter((s) => !s.closed && s.request !== null);
    if (this.bus === null || sessions.length === 0) return 0;
    const nodes = await this.liveNodes();
    if (nodes.length === 0) {
      this.server.logger.warn({ sessions: sessions.length }, 'realtime: no node to take the long-poll sessions over');
      return 0;
    }
    const moves: Promise<void>[] = [];
    for (const s of sessions) {
      if (s.closed || s.ready !== null) continue;
      moves.push(this.moveSession(s, nodes[moves.length % nodes.length]!));
    }
    await Promise.all(moves);
    this.server.logger.info(
      { sessions: moves.length, nodes: nodes.length },
      'realtime: long-poll sessions handed over',
    );
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
      let timer = setTimeout(done, this.busTimeoutMs);
      this.probes.set(rid, (node) => {
        if (nodes.includes(node)) return;
        nodes.push(node);
        if (nodes.length > 1) return;
        clearTimeout(timer);
        timer = setTimeout(done, PROBE_SETTLE_MS);
      });
      this.bus!.send('*', { t: 'who', rid });
    });
  }

  /**
   * Hands `s` to `node`: its connection ends here, its state goes there, every node learns where
   * it is. Requests forwarded there after this reach it after the state (the bus keeps a sender's
   * order, and other nodes learn of the move from this node's later messages); the client's held
   * poll is answered with the new token once the node says it has the session (or after busTimeoutMs).
   */
  private moveSession(s: LongPollSession, node: string): Promise<void> {
    const handed = s.conn.handOff();
    const session: HandedSession = { request: s.request!, ...handed, queue: s.takeQueue() };
    const adopted = new Promise<void>((resolve) => {
      const timer = setTimeout(done, this.busTimeoutMs);
      function done() {
        clearTimeout(timer);
        resolve();
      }
      this.handing.set(s.sid, done);
    }).finally(() => this.handing.delete(s.sid));
    this.sendTo(node, { t: 'adopt', sid: s.sid, session: session as unknown as BusMessage });
    this.learnMoved(s.sid, node);
    this.bus!.send('*', { t: 'moved', sid: s.sid, node });
    return s.movedTo(this.tokens.sign(node, s.sid), adopted);
  }

  private learnMoved(sid: string, node: string): void {
    if (!ID.test(sid) || !ID.test(node)) return;
    const now = Date.now();
    for (const [k, v] of this.moved) {
      if (now - v.at <= MOVED_TTL_MS) break; // oldest first
      this.moved.delete(k);
    }
    this.moved.delete(sid);
    if (node !== this.nodeId || !this.sessions.has(sid)) this.moved.set(sid, { node, at: now });
  }

  /** Another node hands us a session: it is served at once; its connection and channels come back as `connect` answers. */
  private adopt(m: BusMessage, from: string): void {
    const sid = m.sid;
    const st = m.session as unknown as HandedSession | null;
    if (typeof sid !== 'string' || !ID.test(sid) || st === null || typeof st !== 'object') return;
    if (this.sessions.has(sid) || !isHandedSession(st)) return;
    if (this.server.isDraining) {
      this.server.logger.warn({ from }, 'realtime: a long-poll session handed over while this node stops; dropped');
      return;
    }
    const session = new LongPollSession(this, sid, this.tokens.sign(this.nodeId, sid));
    session.request = st.request;
    session.requeue(st.queue);
    this.sessions.set(sid, session);
    this.moved.delete(sid);
    this.sendTo(from, { t: 'adopted', sid });
    session.ready = this.server
      .connectAs(st.request)
      .then((a) => {
        if (session.closed) return;
        if ('status' in a) {
          this.server.logger.warn({ from, status: a.status }, 'realtime: a handed-over long-poll session was refused');
          session.close();
          return;
        }
        this.server.openConnection(session, a, this.sessionTimeoutMs);
        session.conn.adopt({ joins: st.joins, pending: st.pending });
      })
      .catch((err: unknown) => {
        this.server.logger.error({ err }, 'realtime: taking a long-poll session over failed');
        session.close();
      })
      .finally(() => {
        session.ready = null;
      });
  }

  /**
   * Ends this node's sessions. Requests it forwarded are for sessions that live on elsewhere:
   * a poll is answered 204 at once (its client polls again, through another node) and released
   * at the owner; a POST's frames are with the owner, so its answer is waited for (at most
   * the forwarding timeout). The bus must stay open until this resolves.
   */
  async close(): Promise<void> {
    for (const s of Array.from(this.sessions.values())) s.close();
    const waiting: Promise<void>[] = [];
    for (const [rid, entry] of Array.from(this.forwarded)) {
      waiting.push(entry.settled);
      if (entry.onClose === null) continue;
      this.sendTo(entry.node, { t: 'cancel', rid });
      this.settle(rid, entry.onClose);
    }
    await Promise.all(waiting);
  }
}

/** The shape of an `adopt` message's session (it comes from our own nodes; checked all the same). */
function isHandedSession(st: HandedSession): boolean {
  const r = st.request as ConnectRequest | null;
  const frame = (x: InboundMessage) => x !== null && typeof x === 'object' && typeof x.topic === 'string';
  return (
    r !== null &&
    typeof r === 'object' &&
    typeof r.uri === 'string' &&
    (r.transport === 'longpoll' || r.transport === 'websocket') &&
    r.headers !== null &&
    typeof r.headers === 'object' &&
    Array.isArray(st.joins) &&
    st.joins.every((j) => frame(j as unknown as InboundMessage)) &&
    Array.isArray(st.pending) &&
    st.pending.every((x) => frame(x) && typeof x.event === 'string') &&
    Array.isArray(st.queue) &&
    st.queue.every((x) => typeof x === 'string')
  );
}
