/**
 * The WebSocket transport: frames for a socket are collected during a tick and handed to its
 * TCP socket in one write at the end of the tick (one syscall however many frames), and a
 * broadcast's WebSocket frame (header included) is built once and shared by every socket.
 */
import type { Socket as NetSocket } from 'node:net';
import WebSocket from 'ws';
import type { Connection, Transport } from './connection';
import type { Fanout } from './pubsub';
import type { EncodedFrame, Serializer } from './serializer';
import type { RealtimeLogger } from './logger';

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
  ) {}

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

export class WsTransport implements Transport {
  readonly kind = 'websocket' as const;
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

  /**
   * A socket stays over the cap for longer than the grace period (checked whenever it is written
   * to), or goes over 4× the cap at once ⇒ slow client. A healthy client's momentary burst passes.
   */
  private checkBacklog(buffered: number): void {
    const sch = this.scheduler;
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
    this.ws.terminate();
  }
}
