/**
 * A minimal WebSocket client on a raw TCP socket, for load generation only: no http.Agent, no
 * response-header object, no Sec-WebSocket-Accept check, and a fixed all-zero mask (a valid RFC 6455
 * masking key, so frames go out as they are). Text/binary frames in, text frames out, ping
 * answered, close handled. This is what lets two cores open thousands of sockets per second.
 */
import { EventEmitter } from 'node:events';
import { connect, type Socket } from 'node:net';

const CONNECTING = 0;
const OPEN = 1;
const CLOSED = 3;

export interface RawWsOptions {
  localAddress?: string;
  handshakeTimeout?: number;
}

/** Emits 'open', 'message' (data: Buffer, isBinary), 'error' (Error), 'close'. */
export class RawWebSocket extends EventEmitter {
  static readonly OPEN = OPEN;
  readyState = CONNECTING;
  private readonly sock: Socket;
  private buf: Buffer | null = null;
  private timer: NodeJS.Timeout | null;

  constructor(url: string, opts: RawWsOptions = {}) {
    super();
    const u = new URL(url);
    const path = `${u.pathname}${u.search}`;
    this.sock = connect({ host: u.hostname, port: Number(u.port), localAddress: opts.localAddress, noDelay: true });
    this.timer = setTimeout(() => this.fail(new Error('handshake timeout')), opts.handshakeTimeout ?? 15_000);
    this.sock.on('connect', () => {
      this.sock.write(
        `GET ${path} HTTP/1.1\r\nHost: ${u.host}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n` +
          `Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n`,
      );
    });
    this.sock.on('data', (d: Buffer) => this.onData(d));
    this.sock.on('error', (e) => this.fail(e));
    this.sock.on('close', () => this.closed());
  }

  private fail(e: Error): void {
    if (this.readyState === CLOSED) return;
    this.emit('error', e);
    this.terminate();
  }

  private closed(): void {
    if (this.timer) clearTimeout(this.timer);
    this.timer = null;
    if (this.readyState === CLOSED) return;
    this.readyState = CLOSED;
    this.emit('close');
  }

  private onData(d: Buffer): void {
    let b = this.buf ? Buffer.concat([this.buf, d]) : d;
    this.buf = null;
    if (this.readyState === CONNECTING) {
      const end = b.indexOf('\r\n\r\n');
      if (end < 0) {
        this.buf = b;
        return;
      }
      // "HTTP/1.1 101" — anything else is a refusal.
      if (b[9] !== 0x31 || b[10] !== 0x30 || b[11] !== 0x31) {
        this.fail(new Error(`upgrade refused: ${b.toString('latin1', 0, Math.min(end, 40))}`));
        return;
      }
      if (this.timer) clearTimeout(this.timer);
      this.timer = null;
      this.readyState = OPEN;
      this.emit('open');
      b = b.subarray(end + 4);
    }
    let o = 0;
    while (b.length - o >= 2) {
      const b0 = b[o]!;
      let len = b[o + 1]! & 0x7f;
      let h = 2;
      if (len === 126) {
        if (b.length - o < 4) break;
        len = b.readUInt16BE(o + 2);
        h = 4;
      } else if (len === 127) {
        if (b.length - o < 10) break;
        len = b.readUInt32BE(o + 2) * 0x100000000 + b.readUInt32BE(o + 6);
        h = 10;
      }
      if (b.length - o < h + len) break;
      const payload = b.subarray(o + h, o + h + len);
      o += h + len;
      const op = b0 & 0x0f;
      if (op === 1 || op === 2) this.emit('message', payload, op === 2);
      else if (op === 9) this.frame(0x8a, payload);
      else if (op === 8) {
        this.terminate();
        return;
      }
      // Continuation frames (op 0) are not produced by the servers under test.
    }
    if (o < b.length) this.buf = Buffer.from(b.subarray(o));
  }

  private frame(first: number, data: Buffer): void {
    const len = data.length;
    const h = len < 126 ? 6 : len < 65536 ? 8 : 14;
    const out = Buffer.allocUnsafe(h + len);
    out[0] = first;
    if (len < 126) out[1] = 0x80 | len;
    else if (len < 65536) {
      out[1] = 0x80 | 126;
      out.writeUInt16BE(len, 2);
    } else {
      out[1] = 0x80 | 127;
      out.writeUInt32BE(Math.floor(len / 0x100000000), 2);
      out.writeUInt32BE(len >>> 0, 6);
    }
    out.writeUInt32BE(0, h - 4); // mask key 0: XOR leaves the payload as is
    data.copy(out, h);
    this.sock.write(out);
  }

  send(s: string): void {
    if (this.readyState !== OPEN) return;
    this.frame(0x81, Buffer.from(s, 'utf8'));
  }

  terminate(): void {
    if (this.timer) clearTimeout(this.timer);
    this.timer = null;
    this.sock.destroy();
    this.closed();
  }
}
