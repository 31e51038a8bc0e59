import http from 'node:http';
import type { AddressInfo } from 'node:net';
import WebSocket from 'ws';
import { RealtimeServer, type RealtimeServerOptions, type Channel } from '../../src/realtime';

export interface TestServer {
  rt: RealtimeServer;
  http: http.Server;
  port: number;
  wsUrl: string;
  httpUrl: string;
  close(): Promise<void>;
}

/** Starts an HTTP server on 127.0.0.1:0 with a RealtimeServer attached (WebSocket + long-poll). */
export async function startServer(
  opts: RealtimeServerOptions = {},
  setup?: (rt: RealtimeServer) => void,
): Promise<TestServer> {
  const rt = new RealtimeServer({ checkOrigin: false, ...opts });
  setup?.(rt);
  const server = http.createServer((req, res) => {
    if (!rt.handleHttp(req, res)) res.writeHead(404).end();
  });
  rt.attach(server);
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  const port = (server.address() as AddressInfo).port;
  return {
    rt,
    http: server,
    port,
    wsUrl: `ws://127.0.0.1:${port}/socket/websocket`,
    httpUrl: `http://127.0.0.1:${port}`,
    async close() {
      await rt.close();
      server.closeAllConnections();
      await new Promise<void>((r) => server.close(() => r()));
    },
  };
}

export interface Frame {
  data: Buffer;
  isBinary: boolean;
}

/** A raw WebSocket client that queues every frame it receives. */
export class RawClient {
  readonly ws: WebSocket;
  private frames: Frame[] = [];
  private waiters: ((f: Frame) => void)[] = [];
  readonly closed: Promise<{ code: number; reason: string }>;

  private constructor(ws: WebSocket) {
    this.ws = ws;
    ws.on('message', (data: Buffer, isBinary: boolean) => {
      const f = { data, isBinary };
      const w = this.waiters.shift();
      if (w) w(f);
      else this.frames.push(f);
    });
    this.closed = new Promise((r) => ws.on('close', (code, reason) => r({ code, reason: reason.toString() })));
    ws.on('error', () => {});
  }

  static connect(
    url: string,
    opts: { protocols?: string[]; headers?: Record<string, string> } = {},
  ): Promise<RawClient> {
    return new Promise((resolve, reject) => {
      const ws = new WebSocket(url, opts.protocols ?? [], { headers: opts.headers, perMessageDeflate: false });
      const c = new RawClient(ws);
      ws.once('open', () => resolve(c));
      ws.once('unexpected-response', (_req, res) => reject(new Error(`unexpected status ${res.statusCode}`)));
      ws.once('error', reject);
    });
  }

  send(frame: unknown): void {
    this.ws.send(JSON.stringify(frame));
  }

  sendText(text: string): void {
    this.ws.send(text);
  }

  sendBinary(data: Buffer): void {
    this.ws.send(data, { binary: true });
  }

  next(timeoutMs = 2000): Promise<Frame> {
    const f = this.frames.shift();
    if (f) return Promise.resolve(f);
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => {
        const i = this.waiters.indexOf(w);
        if (i >= 0) this.waiters.splice(i, 1);
        reject(new Error(`no frame within ${timeoutMs} ms`));
      }, timeoutMs);
      const w = (fr: Frame): void => {
        clearTimeout(timer);
        resolve(fr);
      };
      this.waiters.push(w);
    });
  }

  async json(timeoutMs?: number): Promise<unknown> {
    const f = await this.next(timeoutMs);
    if (f.isBinary) throw new Error(`expected a text frame, got binary ${f.data.toString('hex')}`);
    return JSON.parse(f.data.toString('utf8'));
  }

  /** Resolves with the frames that arrived within `ms` (expecting none usually). */
  async drain(ms = 100): Promise<unknown[]> {
    await new Promise((r) => setTimeout(r, ms));
    const out = this.frames.map((f) => (f.isBinary ? f.data : JSON.parse(f.data.toString('utf8'))));
    this.frames = [];
    return out;
  }

  /** Sends `frame` and returns the next frame parsed. */
  async call(frame: unknown): Promise<unknown> {
    this.send(frame);
    return this.json();
  }

  close(): Promise<{ code: number; reason: string }> {
    if (this.ws.readyState === WebSocket.OPEN || this.ws.readyState === WebSocket.CONNECTING) this.ws.close(1000);
    return this.closed;
  }

  terminate(): void {
    this.ws.terminate();
  }
}

/** Returns the HTTP status of a refused upgrade, or 101 if it was accepted (then closes). */
export function upgradeStatus(
  url: string,
  opts: { protocols?: string[]; headers?: Record<string, string> } = {},
): Promise<{ status: number; protocol?: string }> {
  return new Promise((resolve, reject) => {
    const ws = new WebSocket(url, opts.protocols ?? [], { headers: opts.headers });
    ws.once('unexpected-response', (_req, res) => {
      resolve({ status: res.statusCode ?? 0 });
      res.resume();
      ws.terminate();
    });
    ws.once('open', () => {
      resolve({ status: 101, protocol: ws.protocol });
      ws.close(1000);
    });
    ws.once('error', (err) => reject(err));
  });
}

export const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

/** Waits until `fn` returns true (polling), or throws. */
export async function until(fn: () => boolean, timeoutMs = 2000, what = 'condition'): Promise<void> {
  const end = Date.now() + timeoutMs;
  while (!fn()) {
    if (Date.now() > end) throw new Error(`timed out waiting for ${what}`);
    await sleep(5);
  }
}

/** The channel used by most protocol tests; behaviour keyed by topic and event. */
export const roomChannel: Channel = {
  async join(topic, payload, socket) {
    const p = (payload ?? {}) as Record<string, unknown>;
    if (topic === 'room:secret') return { status: 'error', response: { reason: 'unauthorized' } };
    if (topic === 'room:crash') throw new Error('boom in join');
    if (topic === 'room:slow') await sleep(Number(p.delay ?? 50));
    if (p.push_on_join) socket.push('joined', { status: 'connected' });
    socket.assigns.joinedWith = p;
    return p.reply !== undefined ? { status: 'ok', response: p.reply } : { status: 'ok' };
  },
  async handleIn(event, payload, socket, ref) {
    switch (event) {
      case 'new_msg':
        return { reply: 'ok', response: { echo: payload } };
      case 'error_reply':
        return { reply: 'error', response: { e: 1 } };
      case 'ok_bare':
        return { reply: 'ok' };
      case 'noreply':
        return;
      case 'push_me':
        socket.push('joined', { status: 'connected' });
        return;
      case 'shout':
        socket.broadcast('shout', payload);
        return;
      case 'shout_from':
        socket.broadcastFrom('shout', payload);
        return;
      case 'crash':
        throw new Error('boom in handleIn');
      case 'stop':
        return { stop: 'normal' };
      case 'stop_reply':
        return { stop: 'shutdown', reply: 'ok', response: { bye: true } };
      case 'upload':
        // Binary in, binary reply out.
        return { reply: 'ok', response: Buffer.concat([Buffer.from('got:'), payload as Buffer]) };
      case 'upload_json':
        return {
          reply: 'ok',
          response: {
            binary: Buffer.isBuffer(payload),
            hex: Buffer.isBuffer(payload) ? payload.toString('hex') : null,
          },
        };
      case 'push_binary':
        socket.push('blob', Buffer.from([1, 2, 3]));
        return;
      case 'push_big_field':
        try {
          socket.push('e'.repeat(300), Buffer.from([1]));
          return { reply: 'ok', response: { pushed: true } };
        } catch (err) {
          return { reply: 'error', response: { reason: (err as Error).message } };
        }
      case 'later':
        setTimeout(() => socket.reply(ref, 'ok', { later: true }), 10);
        return;
      case 'slow':
        await sleep(Number((payload as { ms?: number }).ms ?? 50));
        return { reply: 'ok', response: { slow: true } };
      case 'assigns':
        return { reply: 'ok', response: { assigns: socket.assigns } };
      default:
        return { reply: 'error', response: { reason: `unknown event ${event}` } };
    }
  },
};
