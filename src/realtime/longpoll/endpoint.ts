/**
 * The long-poll transport's endpoint (Phoenix.Transports.LongPoll), used by phoenix.js as a
 * fallback: serves `${path}/longpoll`. Every answer is HTTP 200 with a JSON body whose `status`
 * field carries the meaning.
 *
 * A session lives in the memory of the node that created it. Its token is signed and names
 * that node, so on a cluster any node can serve the session's requests: `forwarding.ts` sends
 * the POST or the poll over the {@link ClusterBus} to the owner and relays the answer. A request
 * whose owner does not answer gets what Phoenix answers (GET: a new session, 410 with a new
 * token; POST: 410), on which phoenix.js reconnects and rejoins its channels. A node that stops
 * gracefully hands its sessions to a live node (`handover.ts`).
 */
import { randomBytes } from 'node:crypto';
import type { IncomingMessage, ServerResponse } from 'node:http';
import type { BusMessage, ClusterBus } from '../bus';
import type { TransportHost } from '../host';
import type { TransportEndpoint } from '../transport';
import { Forwarding } from './forwarding';
import { Handover } from './handover';
import { preflight, readBody, sendJson, tokenOf } from './http';
import { decodeMessage, encodeMessage, isHandoverMessage, type LongPollMessage, type LpBody } from './messages';
import type { LongPollNode } from './node';
import { KIND, LongPollSession } from './session';
import { ID, SessionTokens } from './tokens';

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

export class LongPollEndpoint implements TransportEndpoint, LongPollNode {
  readonly kind = KIND;
  readonly host: TransportHost;
  readonly windowMs: number;
  readonly sessionTimeoutMs: number;
  readonly maxBodyBytes: number;
  readonly maxMessagesPerPost: number;
  readonly busTimeoutMs: number;
  readonly nodeId: string;
  readonly tokens: SessionTokens;
  private readonly live = new Map<string, LongPollSession>();
  private readonly bus: ClusterBus | null;
  private readonly handover: Handover;
  private readonly forwarding: Forwarding;

  constructor(host: TransportHost, opts: LongPollOptions) {
    this.host = host;
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
    this.handover = new Handover(this);
    this.forwarding = new Forwarding(this, this.handover);
    this.bus?.onMessage((m, from) => this.fromBus(m, from));
  }

  // ---- TransportEndpoint -------------------------------------------------------------------

  /** `sessions`: the long-poll sessions held by this node. */
  counts(): Record<string, number> {
    return { sessions: this.live.size };
  }

  get sweepIntervalMs(): number {
    return Math.max(25, Math.min(5000, this.sessionTimeoutMs / 3));
  }

  /** Hands the sessions over to live nodes, when there is a bus and another node is up. */
  async drain(): Promise<void> {
    if (this.bus !== null) await this.handover.handOver();
  }

  /** Ends this node's sessions, and settles the requests it forwarded (see Forwarding.close). */
  async close(): Promise<void> {
    for (const s of this.sessions()) s.close();
    await this.forwarding.close();
  }

  handleHttp(req: IncomingMessage, res: ServerResponse): void {
    const method = req.method ?? 'GET';
    if (method === 'OPTIONS') return preflight(req, res);
    if (method !== 'GET' && method !== 'POST') {
      res.writeHead(400, { 'content-length': '0' }).end();
      return;
    }
    if (!this.host.originAllowed(req)) {
      this.host.logger.warn({ origin: req.headers.origin, transport: KIND }, 'realtime: origin not allowed');
      this.send(res, { status: 403 });
      return;
    }
    const raw = tokenOf(req);
    const named = raw !== null ? this.tokens.verify(raw) : null;
    // A session held here: created here, or taken over from the node its token names.
    const session = named !== null ? this.session(named.sid) : undefined;
    const holder = named !== null ? (this.handover.whereMoved(named.sid) ?? named.node) : null;
    const remote = named !== null && holder !== this.nodeId && this.bus !== null ? { ...named, node: holder! } : null;
    if (method === 'GET') {
      if (session !== undefined) this.listenHere(session, res);
      // Closed, this node holds no poll any more: "nothing yet", and the next one goes elsewhere.
      else if (remote !== null && this.host.isClosed) this.send(res, { status: 204, token: raw!, messages: [] });
      else if (remote !== null) this.forwardPoll(remote.node, remote.sid, raw!, req, res);
      else this.newSession(req, res);
      return;
    }
    if (session !== undefined) {
      session.touch();
      this.readPost(req, res, (body) => {
        const answer = session.post(String(req.headers['content-type'] ?? ''), body);
        if (answer instanceof Promise) void answer.then((b) => this.send(res, b));
        else this.send(res, answer);
      });
    } else if (remote !== null) {
      const ctype = req.headers['content-type'] ?? null;
      this.readPost(req, res, (body) =>
        this.forwarding.post(remote.node, remote.sid, ctype, body, (answer) =>
          this.send(res, answer ?? { status: 410 }),
        ),
      );
    } else {
      // Drain the body so keep-alive connections stay usable.
      req.resume();
      this.send(res, { status: 410 });
    }
  }

  // ---- HTTP ---------------------------------------------------------------------------------

  /** An answer; once this node drains, its connection is closed after it (keep-alive would bring the next request back here). */
  private send(res: ServerResponse, body: LpBody, httpStatus = 200): void {
    sendJson(res, body, httpStatus, this.host.isDraining);
  }

  private readPost(req: IncomingMessage, res: ServerResponse, onBody: (body: Buffer) => void): void {
    readBody(req, res, this.maxBodyBytes, onBody, (size) => {
      this.host.counters.protocolErrors++;
      this.host.logger.warn({ size }, 'realtime: long-poll body too large');
      this.send(res, { status: 413 }, 413);
    });
  }

  private newSession(req: IncomingMessage, res: ServerResponse): void {
    const h = req.headers['x-phoenix-authtoken'];
    const authToken = typeof h === 'string' ? h : null;
    // A gone session's token in the query is no connect param (phoenix.js appends it).
    const raw = tokenOf(req);
    const sessionToken = raw !== null && this.tokens.verify(raw) !== null ? raw : null;
    this.host
      .authorize(req, KIND, authToken, null, sessionToken)
      .then((a) => {
        if ('status' in a) {
          this.send(res, { status: 403 });
          return;
        }
        const session = this.openSession(randomBytes(24).toString('base64url'));
        this.host.openConnection(session, a, this.sessionTimeoutMs);
        this.send(res, { status: 410, token: session.token, messages: [] });
      })
      .catch((err: unknown) => {
        this.host.logger.error({ err }, 'realtime: long-poll connect failed');
        this.send(res, { status: 500 });
      });
  }

  private listenHere(session: LongPollSession, res: ServerResponse): void {
    const answer = (body: LpBody): void => this.send(res, body);
    session.listen(answer);
    res.on('close', () => session.cancelPoll(answer));
  }

  private forwardPoll(node: string, sid: string, token: string, req: IncomingMessage, res: ServerResponse): void {
    const onClose: LpBody = { status: 204, token, messages: [] };
    const release = this.forwarding.poll(node, sid, onClose, (body) => {
      if (body === null) this.newSession(req, res);
      else this.send(res, body);
    });
    // The client left while the owner holds its poll: release it there, keep the messages.
    res.on('close', release);
  }

  // ---- LongPollNode: the sessions and the bus -------------------------------------------------

  session(sid: string): LongPollSession | undefined {
    const s = this.live.get(sid);
    return s !== undefined && !s.closed ? s : undefined;
  }

  sessions(): LongPollSession[] {
    return Array.from(this.live.values()).filter((s) => !s.closed);
  }

  openSession(sid: string): LongPollSession {
    const session = new LongPollSession(this, sid, this.tokens.sign(this.nodeId, sid));
    this.live.set(sid, session);
    return session;
  }

  sessionEnded(s: LongPollSession): void {
    if (this.live.get(s.sid) === s) this.live.delete(s.sid);
  }

  sendTo(node: string, message: LongPollMessage): void {
    if (node === this.nodeId) setImmediate(() => this.fromBus(encodeMessage(message), this.nodeId));
    else this.bus?.send(node, encodeMessage(message));
  }

  sendAll(message: LongPollMessage): void {
    this.bus?.send('*', encodeMessage(message));
  }

  /** Every message from the bus: decoded in one place; a malformed one is logged and dropped. */
  private fromBus(raw: BusMessage, from: string): void {
    const m = decodeMessage(raw);
    if ('problem' in m) {
      this.host.logger.warn({ from, problem: m.problem }, 'realtime: malformed long-poll bus message dropped');
      return;
    }
    try {
      if (isHandoverMessage(m)) this.handover.receive(m, from);
      else this.forwarding.receive(m, from);
    } catch (err) {
      this.host.logger.error({ err, from, t: m.t }, 'realtime: long-poll bus message failed');
    }
  }
}
