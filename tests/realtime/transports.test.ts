/**
 * Transports are an open set (issue 24 item 2): a transport the server has never heard of
 * registers through `RealtimeServer.register`, as the built-in WebSocket and long-poll ones do,
 * and takes part in routing, `connect`, `stats()`, `drain()` and `close()`. And the realtime
 * library imports nothing from the rest of pyre.
 */
import fs from 'node:fs';
import path from 'node:path';
import type { IncomingMessage, ServerResponse } from 'node:http';
import {
  RealtimeServer,
  type Connection,
  type ConnectInfo,
  type EncodedFrame,
  type Fanout,
  type HostedTransport,
  type Serializer,
  type TransportEndpoint,
  type TransportHost,
} from '../../src/realtime';
import { startServer, type TestServer } from './helpers';

/** A test-only transport: `GET /socket/probe?vsn=2.0.0&frame=<json>` opens a connection, hands it the frame, answers what it wrote. */
class ProbeEndpoint implements TransportEndpoint {
  readonly kind = 'probe';
  requests = 0;
  drained = false;
  closed = false;
  readonly open = new Set<ProbeConnection>();

  constructor(private readonly host: TransportHost) {}

  handleHttp(req: IncomingMessage, res: ServerResponse): void {
    this.requests++;
    void this.host.authorize(req, this.kind, null).then((a) => {
      if ('status' in a) {
        res.writeHead(a.status).end();
        return;
      }
      const t = new ProbeConnection(this);
      this.open.add(t);
      const conn = this.host.openConnection(t, a, 0);
      const frame = new URL(req.url ?? '/', 'http://x').searchParams.get('frame');
      if (frame !== null) conn.handleFrame(Buffer.from(frame), false);
      // Replies are written on a later turn.
      setTimeout(() => res.writeHead(200, { 'content-type': 'application/json' }).end(JSON.stringify(t.written)), 20);
    });
  }

  counts(): Record<string, number> {
    return { requests: this.requests };
  }

  async drain(): Promise<void> {
    this.drained = true;
  }

  async close(): Promise<void> {
    this.closed = true;
  }
}

class ProbeConnection implements HostedTransport {
  readonly kind = 'probe';
  conn!: Connection;
  readonly written: string[] = [];
  closedWith: { code: number; reason: string } | null = null;

  constructor(private readonly endpoint: ProbeEndpoint) {}

  write(frame: EncodedFrame): void {
    this.written.push(frame.data.toString('utf8'));
  }

  writeFanout(f: Fanout, serializer: Serializer): void {
    this.write(f.encode(serializer));
  }

  close(code: number, reason: string): void {
    this.closedWith = { code, reason };
    this.endpoint.open.delete(this);
    this.conn.transportClosed();
  }

  terminate(): void {
    this.close(1006, 'terminated');
  }
}

describe('a third transport registered through RealtimeServer.register', () => {
  let srv: TestServer;
  let probe: ProbeEndpoint;
  const infos: ConnectInfo[] = [];

  beforeEach(async () => {
    infos.length = 0;
    srv = await startServer(
      {
        connect: (_params, info) => {
          infos.push(info);
          return { assigns: {} };
        },
      },
      (rt) => {
        rt.channel('room:*', { join: () => ({ status: 'ok', response: { hello: 'probe' } }) });
        probe = new ProbeEndpoint(rt);
        rt.register(probe);
      },
    );
  });
  afterEach(async () => {
    await srv.close();
  });

  const open = async () => {
    const frame = JSON.stringify(['1', '1', 'room:a', 'phx_join', {}]);
    const r = await fetch(`${srv.httpUrl}/socket/probe?vsn=2.0.0&frame=${encodeURIComponent(frame)}`);
    expect(r.status).toBe(200);
    return (await r.json()) as string[];
  };

  it('serves its path, runs connect with its kind and carries channels', async () => {
    expect(srv.rt.transportKinds).toEqual(['websocket', 'longpoll', 'probe']);
    const written = await open();
    expect(written.map((w) => JSON.parse(w))).toEqual([
      ['1', '1', 'room:a', 'phx_reply', { status: 'ok', response: { hello: 'probe' } }],
    ]);
    expect(infos.map((i) => i.transport)).toEqual(['probe']);
    // The built-in ones still answer on their own paths.
    expect((await fetch(`${srv.httpUrl}/socket/websocket`)).status).toBe(400);
    expect((await fetch(`${srv.httpUrl}/socket/unknown`)).status).toBe(404);
  });

  it('is in stats(), by kind, beside the built-in transports', async () => {
    await open();
    await open();
    const stats = srv.rt.stats();
    expect(stats.sockets).toBe(2);
    expect(stats.transports).toEqual({
      websocket: { connections: 0 },
      longpoll: { connections: 0, sessions: 0 },
      probe: { connections: 2, requests: 2 },
    });
  });

  it('is drained (its connections closed with 1012) and closed with the server', async () => {
    await open();
    const [t] = [...probe.open];
    await srv.rt.drain({ intervalMs: 0 });
    expect(probe.drained).toBe(true);
    expect(t!.closedWith).toEqual({ code: 1012, reason: 'server restart' });
    expect(srv.rt.stats().transports.probe).toEqual({ connections: 0, requests: 1 });
    expect(probe.closed).toBe(false);
    await srv.rt.close();
    expect(probe.closed).toBe(true);
  });

  it('refuses a kind registered twice, a kind that is no path segment, and a registration after close', async () => {
    expect(() => srv.rt.register(new ProbeEndpoint(srv.rt))).toThrow(/probe registered twice/);
    const odd = Object.assign(new ProbeEndpoint(srv.rt), { kind: 'a/b' });
    expect(() => srv.rt.register(odd)).toThrow(/must match/);
    const other = new RealtimeServer();
    await other.close();
    expect(() => other.register(Object.assign(new ProbeEndpoint(other), { kind: 'late' }))).toThrow(/after close/);
  });
});

describe('the realtime library', () => {
  const dir = path.join(__dirname, '..', '..', 'src', 'realtime');
  const files = (d: string): string[] =>
    fs
      .readdirSync(d, { withFileTypes: true })
      .flatMap((e) => (e.isDirectory() ? files(path.join(d, e.name)) : [path.join(d, e.name)]))
      .filter((f) => f.endsWith('.ts'));

  it('imports nothing from the rest of pyre (only itself, node: modules and ws)', () => {
    const outside: string[] = [];
    for (const file of files(dir)) {
      const text = fs.readFileSync(file, 'utf8');
      for (const m of text.matchAll(/(?:from|import)\s*\(?\s*'([^']+)'/g)) {
        const spec = m[1]!;
        const inside = spec.startsWith('.')
          ? path.resolve(path.dirname(file), spec).startsWith(dir + path.sep)
          : spec.startsWith('node:') || spec === 'ws';
        if (!inside) outside.push(`${path.relative(dir, file)}: ${spec}`);
      }
    }
    expect(files(dir).length).toBeGreaterThan(10);
    expect(outside).toEqual([]);
  });

  it('has no file over 500 lines', () => {
    const long = files(dir)
      .map((f) => ({ file: path.relative(dir, f), lines: fs.readFileSync(f, 'utf8').split('\n').length }))
      .filter((f) => f.lines > 500);
    expect(long).toEqual([]);
  });
});
