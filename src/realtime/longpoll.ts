/**
 * The long-poll transport (Phoenix.Transports.LongPoll), used by phoenix.js as a fallback.
 * Every answer is HTTP 200 with a JSON body whose `status` field carries the meaning.
 */
import { randomBytes } from 'node:crypto';
import type { IncomingMessage, ServerResponse } from 'node:http';
import type { Connection } from './connection';
import type { HostedTransport, TransportHost } from './host';
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
}

const JSON_HEADERS = {
  'content-type': 'application/json; charset=utf-8',
  'cache-control': 'no-store',
  'access-control-allow-origin': '*',
};

function sendJson(res: ServerResponse, body: unknown, httpStatus = 200): void {
  if (res.writableEnded || res.destroyed) return;
  const text = JSON.stringify(body);
  res.writeHead(httpStatus, { ...JSON_HEADERS, 'content-length': Buffer.byteLength(text) });
  res.end(text);
}

/** One long-poll client: a connection whose writes queue until the next poll. */
export class LongPollSession implements HostedTransport {
  readonly kind = 'longpoll' as const;
  readonly token: string;
  conn!: Connection;
  private queue: string[] = [];
  private poll: ServerResponse | null = null;
  private pollTimer: NodeJS.Timeout | null = null;
  private flushScheduled = false;
  closed = false;
  private readonly owner: LongPollEndpoint;

  constructor(owner: LongPollEndpoint, token: string) {
    this.owner = owner;
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
    if (this.poll !== null && !this.flushScheduled) {
      this.flushScheduled = true;
      setImmediate(() => {
        this.flushScheduled = false;
        this.answerPoll();
      });
    }
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

  /** A GET with this session's token. */
  listen(res: ServerResponse): void {
    this.touch();
    if (this.poll !== null) this.finishPoll({ status: 204, token: this.token, messages: [] });
    if (this.queue.length > 0) {
      const messages = this.queue;
      this.queue = [];
      sendJson(res, { status: 200, token: this.token, messages });
      return;
    }
    this.poll = res;
    this.pollTimer = setTimeout(
      () => this.finishPoll({ status: 204, token: this.token, messages: [] }),
      this.owner.windowMs,
    );
    res.on('close', () => {
      if (this.poll === res) this.clearPoll();
    });
  }

  private answerPoll(): void {
    if (this.poll === null || this.queue.length === 0) return;
    const messages = this.queue;
    this.queue = [];
    this.finishPoll({ status: 200, token: this.token, messages });
  }

  private finishPoll(body: unknown): void {
    const res = this.poll;
    this.clearPoll();
    if (res !== null) sendJson(res, body);
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

  terminate(): void {
    this.close();
  }

  close(): void {
    if (this.closed) return;
    this.closed = true;
    this.owner.sessions.delete(this.token);
    // A held poll learns the session is gone; phoenix.js then reconnects and rejoins.
    this.finishPoll({ status: 410 });
    this.queue = [];
    this.conn.transportClosed();
  }
}

/** Serves `${path}/longpoll`: the sessions of this process. */
export class LongPollEndpoint {
  readonly server: TransportHost;
  readonly sessions = new Map<string, LongPollSession>();
  readonly windowMs: number;
  readonly sessionTimeoutMs: number;
  readonly maxBodyBytes: number;
  readonly maxMessagesPerPost: number;

  constructor(server: TransportHost, opts: LongPollOptions) {
    this.server = server;
    this.windowMs = opts.windowMs ?? 10_000;
    this.sessionTimeoutMs = opts.sessionTimeoutMs ?? Math.round(this.windowMs * 1.5);
    this.maxBodyBytes = opts.maxBodyBytes ?? 1024 * 1024;
    this.maxMessagesPerPost = opts.maxMessagesPerPost ?? 100;
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
      sendJson(res, { status: 403 });
      return;
    }
    const token = this.tokenOf(req);
    const session = token !== null ? this.sessions.get(token) : undefined;
    if (method === 'GET') {
      if (session !== undefined && !session.closed) session.listen(res);
      else this.newSession(req, res);
      return;
    }
    if (session === undefined || session.closed) {
      // Drain the body so keep-alive connections stay usable.
      req.resume();
      sendJson(res, { status: 410 });
      return;
    }
    this.publish(req, res, session);
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

  private newSession(req: IncomingMessage, res: ServerResponse): void {
    const h = req.headers['x-phoenix-authtoken'];
    const authToken = typeof h === 'string' ? h : null;
    this.server
      .authorize(req, 'longpoll', authToken)
      .then((a) => {
        if ('status' in a) {
          sendJson(res, { status: 403 });
          return;
        }
        const token = randomBytes(24).toString('base64url');
        const session = new LongPollSession(this, token);
        this.sessions.set(token, session);
        this.server.openConnection(session, a, this.sessionTimeoutMs);
        sendJson(res, { status: 410, token, messages: [] });
      })
      .catch((err: unknown) => {
        this.server.logger.error({ err }, 'realtime: long-poll connect failed');
        sendJson(res, { status: 500 });
      });
  }

  private publish(req: IncomingMessage, res: ServerResponse, session: LongPollSession): void {
    session.touch();
    const preRead = (req as { body?: unknown }).body;
    if (Buffer.isBuffer(preRead) || typeof preRead === 'string') {
      this.dispatchBody(req, res, session, Buffer.from(preRead));
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
        this.server.logger.warn({ socketId: session.conn.id, size }, 'realtime: long-poll body too large');
        sendJson(res, { status: 413 }, 413);
        return;
      }
      chunks.push(c);
    });
    req.on('end', () => {
      if (!tooBig) this.dispatchBody(req, res, session, Buffer.concat(chunks));
    });
    req.on('error', () => res.destroy());
  }

  private dispatchBody(req: IncomingMessage, res: ServerResponse, session: LongPollSession, body: Buffer): void {
    const ctype = String(req.headers['content-type'] ?? '');
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
        if (line.startsWith('[')) {
          const data = Buffer.from(line, 'utf8');
          if (data.length > this.server.maxFrameBytes) {
            this.tooBig(session);
            continue;
          }
          conn.handleFrame(data, false);
        } else if (line.length > 0) {
          const data = Buffer.from(line, 'base64');
          if (data.length > this.server.maxFrameBytes) {
            this.tooBig(session);
            continue;
          }
          conn.handleFrame(data, true);
        }
      }
    } else if (body.length > this.server.maxFrameBytes) {
      this.tooBig(session);
    } else {
      conn.handleFrame(body, false);
    }
    // Phoenix answers once the session process has handled the frames; a join still running
    // after window_ms yields 408.
    const pending = conn.pendingJoin;
    if (pending === null) {
      sendJson(res, { status: 200 });
      return;
    }
    let done = false;
    const timer = setTimeout(() => {
      if (done) return;
      done = true;
      sendJson(res, { status: 408 });
    }, this.windowMs);
    pending.then(() => {
      if (done) return;
      done = true;
      clearTimeout(timer);
      sendJson(res, { status: 200 });
    });
  }

  private tooBig(session: LongPollSession): void {
    this.server.counters.protocolErrors++;
    this.server.logger.warn(
      { socketId: session.conn.id },
      'realtime: long-poll frame larger than maxFrameBytes dropped',
    );
  }

  /** Sessions are expired by the server's sweep (idleTimeoutMs = sessionTimeoutMs). */
  close(): void {
    for (const s of Array.from(this.sessions.values())) s.close();
  }
}
