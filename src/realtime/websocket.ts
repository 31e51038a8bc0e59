/**
 * The WebSocket transport: the upgrade handler (`WebSocketEndpoint`) and one `WsTransport` per
 * socket. Frames for a socket are collected during a tick and handed to its
 * TCP socket in one write at the end of the tick (one syscall however many frames), and a
 * broadcast's WebSocket frame (header included) is built once and shared by every socket.
 */
import type { IncomingMessage, ServerResponse } from 'node:http';
import type { Socket as NetSocket } from 'node:net';
import type { Duplex } from 'node:stream';
import WebSocket, { WebSocketServer } from 'ws';
import type { Connection } from './connection';
import type { HostedTransport, TransportHost } from './host';
import type { Fanout } from './pubsub';
import type { EncodedFrame, Serializer } from './serializer';
import type { RealtimeLogger } from './logger';
import { rejectUpgrade, type TransportEndpoint } from './transport';

/** This transport's kind: its path under the mount, `info.transport` in `connect`. */
const KIND = 'websocket';

/** Builds an unmasked server→client WebSocket frame (RFC 6455 §5.2) around `data`. */
export function wsFrame(data: Buffer, binary: boolean): Buffer {
  const len = data.length;
  const head = len < 126 ? 2 : len < 65536 ? 4 : 10;
  const buf = Buffer.allocUnsafe(head + len);
  buf[0] = binary ? 0x82 : 0x81;
  if (len < 126) {
    buf[1] = len;
  } else if (len < 65536) {
    buf[1] = 126;
    buf.writeUInt16BE(len, 2);
  } else {
    buf[1] = 127;
    buf.writeUInt32BE(Math.floor(len / 0x100000000), 2);
    buf.writeUInt32BE(len >>> 0, 6);
  }
  data.copy(buf, head);
  return buf;
}

/** Batches per-socket writes until the end of the tick. One per server. */
export class WriteScheduler {
  private dirty: WsTransport[] = [];
  private scheduled = false;
  /** How long the last flush pass took (ms), when the event loop was saturated; else 0. */
  private lastFlushMs = 0;
  private elu = performance.eventLoopUtilization();
  private readonly flushAll = (): void => {
    const started = performance.now();
    this.scheduled = false;
    const list = this.dirty;
    this.dirty = [];
    for (let i = 0; i < list.length; i++) list[i]!.flush();
    if (this.maxTotalBufferedBytes > 0 && this.totalBacklog > this.maxTotalBufferedBytes) this.enforceBudget();
    const took = performance.now() - started;
    // Saturated: the loop was busy over 90% of the time since the last flush.
    const elu = performance.eventLoopUtilization();
    const busy = performance.eventLoopUtilization(elu, this.elu).utilization;
    this.elu = elu;
    this.lastFlushMs = busy > 0.9 ? took : 0;
  };

  constructor(
    readonly maxBufferedBytes: number,
    readonly slowClientGraceMs: number,
    readonly onSlowClient: (t: WsTransport, buffered: number) => void,
    /**
     * While flushing is slow (the server is saturated), wait up to this long before the next
     * flush so that consecutive broadcasts share one write per socket. 0: always end of tick.
     */
    readonly maxFlushDelayMs = 10,
    /** Unsent bytes allowed across all sockets (0: no overall budget); see enforceBudget. */
    readonly maxTotalBufferedBytes = 0,
    readonly onOverBudget: (t: WsTransport, buffered: number, total: number) => void = () => {},
  ) {}

  /** Sockets with unsent bytes, as last seen after a write, and their sum. */
  private readonly backlogs = new Map<WsTransport, number>();
  private totalBacklog = 0;

  /** A socket's unsent bytes after a write (0 once the kernel took everything). */
  noteBacklog(t: WsTransport, bytes: number): void {
    const old = this.backlogs.get(t) ?? 0;
    if (bytes > 0) this.backlogs.set(t, bytes);
    else this.backlogs.delete(t);
    this.totalBacklog += bytes - old;
  }

  /** A socket is gone: its bytes no longer count. */
  forget(t: WsTransport): void {
    this.noteBacklog(t, 0);
  }

  /**
   * Each socket may hold up to maxBufferedBytes, so many non-readers together could hold a lot:
   * over the overall budget, the sockets holding the most are cut first until the rest fits. A
   * reader's backlog drains to 0 between writes, so a healthy reader is never among them.
   */
  private enforceBudget(): void {
    // What was recorded may have drained since (a slow but reading client): look again.
    for (const [t, recorded] of this.backlogs) {
      const now = t.backlog();
      if (now !== recorded) this.noteBacklog(t, now);
    }
    if (this.totalBacklog <= this.maxTotalBufferedBytes) return;
    const largestFirst = [...this.backlogs].sort((a, b) => b[1] - a[1]);
    for (const [t, bytes] of largestFirst) {
      if (this.totalBacklog <= this.maxTotalBufferedBytes) break;
      this.onOverBudget(t, bytes, this.totalBacklog);
      this.forget(t);
    }
  }

  add(t: WsTransport): void {
    this.dirty.push(t);
    if (!this.scheduled) {
      this.scheduled = true;
      // An idle server writes at the end of the tick; a saturated one (busy loop, last pass ≥ 2 ms) waits
      // about as long as that pass took, up to the cap: fewer syscalls per message when it counts.
      if (this.maxFlushDelayMs > 0 && this.lastFlushMs >= 2) {
        setTimeout(this.flushAll, Math.min(this.maxFlushDelayMs, Math.ceil(this.lastFlushMs)));
      } else {
        setImmediate(this.flushAll);
      }
    }
  }
}

const BINARY_OPTS = { binary: true } as const;
const TEXT_OPTS = { binary: false } as const;

export class WsTransport implements HostedTransport {
  readonly kind = KIND;
  readonly ws: WebSocket;
  private readonly sock: NetSocket | null;
  /** Frames written this tick, sent by flush(): one buffer, or several. */
  private pending: Buffer | Buffer[] | null = null;
  /** When the backlog first went over the cap (0 = it is not). */
  private overSince = 0;
  conn!: Connection;
  private readonly scheduler: WriteScheduler;
  private readonly logger: RealtimeLogger;

  constructor(ws: WebSocket, scheduler: WriteScheduler, logger: RealtimeLogger) {
    this.ws = ws;
    // ws keeps the TCP socket in `_socket`; with permessage-deflate off its Sender writes to it
    // synchronously, so writing complete frames there ourselves interleaves safely.
    const s = (ws as unknown as { _socket?: NetSocket })._socket;
    this.sock = s && typeof s.write === 'function' ? s : null;
    this.scheduler = scheduler;
    this.logger = logger;
  }

  write(frame: EncodedFrame): void {
    if (this.sock === null) {
      this.fallbackSend(frame.data, frame.binary);
      return;
    }
    this.raw(wsFrame(frame.data, frame.binary));
  }

  writeFanout(f: Fanout, serializer: Serializer): void {
    let buf = f.wsFrames[serializer.index];
    if (buf === undefined) {
      let enc: EncodedFrame;
      try {
        enc = f.encode(serializer);
      } catch (err) {
        this.logger.warn(
          { topic: f.message.topic, event: f.message.event, serializer: serializer.name, err: String(err) },
          'realtime: broadcast cannot be encoded for this serializer; skipped',
        );
        return;
      }
      if (this.sock === null) {
        this.fallbackSend(enc.data, enc.binary);
        return;
      }
      buf = wsFrame(enc.data, enc.binary);
      f.wsFrames[serializer.index] = buf;
    }
    this.raw(buf);
  }

  private fallbackSend(data: Buffer, binary: boolean): void {
    if (this.ws.readyState === WebSocket.OPEN) this.ws.send(data, binary ? BINARY_OPTS : TEXT_OPTS);
  }

  private raw(buf: Buffer): void {
    const s = this.sock!;
    if (this.ws.readyState !== WebSocket.OPEN || s.destroyed) return;
    const p = this.pending;
    if (p === null) {
      this.pending = buf;
      this.scheduler.add(this);
    } else if (Array.isArray(p)) {
      p.push(buf);
    } else {
      this.pending = [p, buf];
    }
  }

  /** End of tick: one write per socket (frames of this tick concatenated), then check what the kernel could not take. */
  flush(): void {
    const p = this.pending;
    if (p === null) return;
    this.pending = null;
    const s = this.sock!;
    if (s.destroyed) return;
    s.write(Array.isArray(p) ? Buffer.concat(p) : p);
    this.checkBacklog(s.writableLength);
  }

  /** Bytes written to the TCP socket that the kernel has not taken yet. */
  backlog(): number {
    const s = this.sock;
    return s === null || s.destroyed ? 0 : s.writableLength;
  }

  /**
   * A socket stays over the cap for longer than the grace period (checked whenever it is written
   * to), or goes over 4× the cap at once ⇒ slow client. A healthy client's momentary burst passes.
   */
  private checkBacklog(buffered: number): void {
    const sch = this.scheduler;
    sch.noteBacklog(this, buffered);
    if (buffered <= sch.maxBufferedBytes) {
      this.overSince = 0;
      return;
    }
    const now = Date.now();
    if (this.overSince === 0) this.overSince = now;
    if (buffered > 4 * sch.maxBufferedBytes || now - this.overSince >= sch.slowClientGraceMs)
      sch.onSlowClient(this, buffered);
  }

  close(code: number, reason: string): void {
    const st = this.ws.readyState;
    if (st === WebSocket.CLOSING || st === WebSocket.CLOSED) return;
    // Frames queued this tick go before the close frame.
    this.flush();
    try {
      this.ws.close(code, reason);
    } catch {
      this.ws.terminate();
    }
  }

  /** Drops the TCP connection without a close handshake (slow or dead peers). */
  terminate(): void {
    this.scheduler.forget(this);
    this.ws.terminate();
  }

  /** The WebSocket closed: its unsent bytes no longer count against the overall budget. */
  closed(): void {
    this.scheduler.forget(this);
  }
}

/** Decodes phoenix.js's `base64url.bearer.phx.<b64>` subprotocol token (std or url-safe alphabet, no padding). */
function decodeAuthToken(b64: string): string | null {
  const std = b64.replace(/-/g, '+').replace(/_/g, '/');
  if (!/^[A-Za-z0-9+/]*={0,2}$/.test(std)) return null;
  return Buffer.from(std, 'base64').toString('utf8');
}

const AUTH_PREFIX = 'base64url.bearer.phx.';

export interface WebSocketEndpointOptions {
  maxBufferedBytes: number;
  slowClientGraceMs: number;
  maxFlushDelayMs: number;
  maxTotalBufferedBytes: number;
}

/** Serves `${path}/websocket`: authorises the upgrade through the host, then runs a WsTransport. */
export class WebSocketEndpoint implements TransportEndpoint {
  readonly kind = KIND;
  private readonly host: TransportHost;
  private readonly wss: WebSocketServer;
  private readonly scheduler: WriteScheduler;

  constructor(host: TransportHost, opts: WebSocketEndpointOptions) {
    this.host = host;
    this.scheduler = new WriteScheduler(
      opts.maxBufferedBytes,
      opts.slowClientGraceMs,
      (t, buffered) => {
        host.counters.slowClientDisconnects++;
        host.logger.warn(
          { socketId: t.conn?.id ?? null, buffered },
          'realtime: slow client exceeded its unsent-bytes cap, closing',
        );
        t.terminate();
      },
      opts.maxFlushDelayMs,
      opts.maxTotalBufferedBytes,
      (t, buffered, total) => {
        host.counters.slowClientDisconnects++;
        host.logger.warn(
          { socketId: t.conn?.id ?? null, buffered, total, budget: opts.maxTotalBufferedBytes },
          'realtime: unsent bytes of all sockets over the overall budget, closing the socket holding the most',
        );
        t.terminate();
      },
    );
    this.wss = new WebSocketServer({
      noServer: true,
      perMessageDeflate: false,
      maxPayload: host.maxFrameBytes,
      clientTracking: false,
      handleProtocols: (protocols) => (protocols.has('phoenix') ? 'phoenix' : false),
    });
  }

  /** A plain HTTP request for the WebSocket path (no upgrade): 400, as Phoenix answers it. */
  handleHttp(_req: IncomingMessage, res: ServerResponse): void {
    res.writeHead(400, { 'content-length': '0' }).end();
  }

  handleUpgrade(req: IncomingMessage, socket: Duplex, head: Buffer): void {
    const host = this.host;
    socket.on('error', onEarlySocketError);
    if (req.method !== 'GET') {
      rejectUpgrade(socket, 400);
      return;
    }
    // phoenix.js sends its authToken as a subprotocol beside "phoenix". The other subprotocols
    // offered, if any, must include "phoenix" (Phoenix 1.8 answers 403 otherwise).
    let authToken: string | null = null;
    let offersOthers = false;
    let offersPhoenix = false;
    const proto = req.headers['sec-websocket-protocol'];
    if (typeof proto === 'string') {
      for (const p of proto.split(',')) {
        const t = p.trim();
        if (t.startsWith(AUTH_PREFIX)) authToken = decodeAuthToken(t.slice(AUTH_PREFIX.length));
        else if (t === 'phoenix') offersPhoenix = true;
        else if (t !== '') offersOthers = true;
      }
    }
    const refuse = offersOthers && !offersPhoenix ? { status: 403, reason: 'no supported subprotocol offered' } : null;
    // Whichever comes first: the answer, or the deadline (a connect that never settles).
    let answered = false;
    const answer = (): boolean => {
      if (answered) return false;
      answered = true;
      clearTimeout(deadline);
      return true;
    };
    const deadline = setTimeout(() => {
      if (!answer()) return;
      host.counters.connectsRefused++;
      host.logger.warn({ upgradeTimeoutMs: host.upgradeTimeoutMs }, 'realtime: upgrade not answered in time, closing');
      rejectUpgrade(socket, 503);
    }, host.upgradeTimeoutMs);
    host
      .authorize(req, KIND, authToken, refuse)
      .then((a) => {
        if (!answer()) return;
        if ('status' in a) {
          rejectUpgrade(socket, a.status);
          return;
        }
        if (socket.destroyed) return;
        // Phoenix (WebSockAdapter) validates the handshake after connect: only version 13 upgrades.
        if (req.headers['sec-websocket-version'] !== '13') {
          rejectUpgrade(socket, 400);
          return;
        }
        this.wss.handleUpgrade(req, socket, head, (ws) => {
          socket.removeListener('error', onEarlySocketError);
          if (host.isClosed) {
            ws.terminate();
            return;
          }
          const t = new WsTransport(ws, this.scheduler, host.logger);
          (ws as unknown as Record<symbol, WsTransport>)[TRANSPORT] = t;
          ws.on('message', onWsMessage);
          ws.on('close', onWsClose);
          ws.on('error', onWsError);
          host.openConnection(t, a, host.idleTimeoutMs);
        });
      })
      .catch((err: unknown) => {
        answer();
        host.logger.error({ err }, 'realtime: upgrade failed');
        if (!socket.destroyed) rejectUpgrade(socket, 500);
      });
  }

  close(): Promise<void> {
    return new Promise<void>((r) => this.wss.close(() => r()));
  }
}

const TRANSPORT = Symbol('realtime.transport');

function transportOf(ws: WebSocket): WsTransport {
  return (ws as unknown as Record<symbol, WsTransport>)[TRANSPORT]!;
}

function onEarlySocketError(): void {
  // A client that vanished during connect: nothing to do, the socket is destroyed by Node.
}

function onWsMessage(this: WebSocket, data: WebSocket.RawData, isBinary: boolean): void {
  const t = transportOf(this);
  const buf = Buffer.isBuffer(data) ? data : Array.isArray(data) ? Buffer.concat(data) : Buffer.from(data);
  t.conn.handleFrame(buf, isBinary);
}

function onWsClose(this: WebSocket): void {
  const t = transportOf(this);
  t.closed();
  t.conn.transportClosed();
}

function onWsError(this: WebSocket, err: Error & { code?: string }): void {
  const t = transportOf(this);
  t.conn.ctx.counters.protocolErrors++;
  t.conn.logger.warn({ socketId: t.conn.id, code: err.code, err: err.message }, 'realtime: websocket error, closing');
}
