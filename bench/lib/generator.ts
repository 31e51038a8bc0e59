/**
 * A generator process: holds up to ~19k client sockets (the per-process open-file limit is 20,000),
 * joins topics, heartbeats, and records publish-to-receive latency. Driven by the harness over IPC;
 * every operation is bounded by a count and a timeout.
 */
import WebSocket from 'ws';
import { nowMs, sleep } from './clock';
import { Hist } from './hist';
import { serveRpc } from './ipc';
import { extractT } from './payload';
import { type ClientConn, type Proto, dialects } from './protocols';
import { RawWebSocket } from './rawws';

/**
 * Which client socket to use: 'raw' (lib/rawws.ts, the lean default) or 'ws' (the ws package's
 * client, heavier per connection). BENCH_CLIENT overrides.
 */
const CLIENT: 'raw' | 'ws' = process.env.BENCH_CLIENT === 'ws' ? 'ws' : 'raw';
type ClientSocket = WebSocket | RawWebSocket;
const OPEN = 1;

function newSocket(url: string, localAddress: string): ClientSocket {
  if (CLIENT === 'raw') return new RawWebSocket(url, { localAddress, handshakeTimeout: 15_000 });
  return new WebSocket(url, {
    localAddress,
    perMessageDeflate: false,
    handshakeTimeout: 15_000,
    skipUTF8Validation: true,
  });
}

export interface Target {
  host: string;
  port: number;
}

export interface ConnectArgs {
  proto: Proto;
  /** Connection with global index g goes to targets[g % targets.length]. */
  targets: Target[];
  count: number;
  /** Global index of this generator's first connection (topic assignment is global). */
  base: number;
  topicPrefix: string;
  /** Explicit topics instead of prefix+number: connection g joins topics[g % length]. */
  topics?: string[];
  /** Record when a frame containing this text first arrives on each topic (e.g. a task status). */
  watch?: string;
  topicCount: number;
  topicsPerConn: number;
  localAddresses: string[];
  concurrency: number;
  token?: string;
  /** Signs a token per connection: `${token}` is used as is when tokenPerConn is false. */
  path?: string;
  heartbeatMs: number;
  timeoutMs: number;
  /** Connect attempts per socket before it counts as failed. */
  maxAttempts?: number;
}

interface Conn extends ClientConn {
  g: number;
  ws: ClientSocket | null;
  target: Target;
  localAddress: string;
  done: boolean;
}

let args: ConnectArgs | null = null;
const conns: Conn[] = [];
const hist = new Hist();
let received = 0;
let firstRecv = Infinity;
let lastRecv = 0;
let unexpectedCloses = 0;
let errors = 0;
let joinErrors = 0;
let hbTimer: NodeJS.Timeout | null = null;
let storming = false;
/** topic → monotonic ms of the first frame containing args.watch. */
const watched = new Map<string, number>();
let watchBuf: Buffer | null = null;

function noteWatched(data: Buffer): void {
  if (!watchBuf || data.indexOf(watchBuf) < 0) return;
  const now = nowMs();
  try {
    const topic = (JSON.parse(data.toString('utf8')) as unknown[])[2];
    if (typeof topic === 'string' && !watched.has(topic)) watched.set(topic, now);
  } catch {
    /* not a V2 frame */
  }
}

function topicsFor(a: ConnectArgs, g: number): string[] {
  if (a.topics && a.topics.length > 0) return [a.topics[g % a.topics.length]!];
  const out: string[] = [];
  for (let k = 0; k < a.topicsPerConn; k++) out.push(`${a.topicPrefix}${(g * a.topicsPerConn + k) % a.topicCount}`);
  return out;
}

/** Opens one socket and resolves once every topic is joined; rejects on error, close or timeout. */
function open(c: Conn, a: ConnectArgs): Promise<void> {
  const d = dialects[a.proto];
  c.joined = 0;
  c.pendingJoins.clear();
  return new Promise<void>((resolve, reject) => {
    let settled = false;
    const ws = newSocket(d.url(c.target.host, c.target.port, a.token, a.path), c.localAddress);
    c.ws = ws;
    const timer = setTimeout(() => fail(new Error('join timeout')), 20_000);
    const fail = (e: Error): void => {
      if (settled) return;
      settled = true;
      clearTimeout(timer);
      ws.removeAllListeners();
      ws.on('error', () => {});
      ws.terminate();
      c.ws = null;
      reject(e);
    };
    ws.on('open', () => d.onOpen(c));
    ws.on('message', (data: Buffer) => {
      const kind = d.onFrame(c, data);
      if (kind === 'broadcast') {
        const now = nowMs();
        const t = extractT(data);
        received++;
        if (now < firstRecv) firstRecv = now;
        lastRecv = now;
        if (t === t) hist.record(now - t);
      } else if (kind === 'other' && watchBuf) {
        noteWatched(data);
      } else if (kind === 'joined') {
        c.joined++;
        if (c.joined === c.topics.length && !settled) {
          settled = true;
          clearTimeout(timer);
          c.done = true;
          resolve();
        }
      } else if (kind === 'join-error') {
        joinErrors++;
        fail(new Error('join refused'));
      }
    });
    ws.on('error', (e: Error) => {
      errors++;
      fail(e);
    });
    ws.on('close', () => {
      if (!settled) fail(new Error('closed before joined'));
      else if (!storming) unexpectedCloses++;
      c.done = false;
      c.ws = null;
    });
  });
}

async function connect(a: ConnectArgs): Promise<unknown> {
  args = a;
  watchBuf = a.watch ? Buffer.from(a.watch) : null;
  const t0 = nowMs();
  const deadline = t0 + a.timeoutMs;
  const start = conns.length;
  for (let i = 0; i < a.count; i++) {
    const g = a.base + i;
    const c: Conn = {
      g,
      ws: null,
      target: a.targets[g % a.targets.length]!,
      localAddress: a.localAddresses[i % a.localAddresses.length]!,
      topics: topicsFor(a, g),
      joined: 0,
      seq: 0,
      pendingJoins: new Set(),
      done: false,
      send(s: string) {
        this.ws?.send(s);
      },
    };
    conns.push(c);
  }
  startHeartbeats(a); // from the first socket on: servers close sockets idle for 60 s
  let next = start;
  let joined = 0;
  let failed = 0;
  let retries = 0;
  const maxAttempts = a.maxAttempts ?? 4;
  const worker = async (): Promise<void> => {
    while (next < conns.length && nowMs() < deadline) {
      const c = conns[next++]!;
      for (let attempt = 1; ; attempt++) {
        try {
          await open(c, a);
          joined++;
          break;
        } catch {
          if (attempt >= maxAttempts || nowMs() > deadline) {
            failed++;
            break;
          }
          retries++;
          await sleep(50 * attempt);
        }
      }
    }
  };
  await Promise.all(Array.from({ length: Math.max(1, a.concurrency) }, worker));
  return { joined, failed, retries, ms: nowMs() - t0, startMs: t0, endMs: nowMs() };
}

/** One 1 s sweep: connection i heartbeats in second i mod (heartbeatMs/1000), like a 30 s per-socket timer. */
function startHeartbeats(a: ConnectArgs): void {
  if (hbTimer || a.heartbeatMs <= 0) return;
  const slots = Math.max(1, Math.round(a.heartbeatMs / 1000));
  const d = dialects[a.proto];
  let sec = 0;
  hbTimer = setInterval(() => {
    sec = (sec + 1) % slots;
    for (let i = sec; i < conns.length; i += slots) {
      const c = conns[i]!;
      if (c.ws && c.ws.readyState === OPEN) d.heartbeat(c);
    }
  }, 1000);
}

/** Reconnect storm: drop every socket at once, then reconnect each with jittered backoff. */
async function storm(s: { timeoutMs: number; backoffMs: number[] }): Promise<unknown> {
  const a = args;
  if (!a) throw new Error('storm before connect');
  storming = true;
  const t0 = nowMs();
  for (const c of conns) {
    c.done = false;
    c.ws?.terminate();
  }
  let back = 0;
  let attempts = 0;
  let failures = 0;
  const deadline = t0 + s.timeoutMs;
  const schedule = s.backoffMs;
  await Promise.all(
    conns.map(async (c) => {
      for (let k = 0; nowMs() < deadline; k++) {
        const base = schedule[Math.min(k, schedule.length - 1)]!;
        await sleep(base * (0.5 + Math.random()));
        attempts++;
        try {
          await open(c, a);
          back++;
          return;
        } catch {
          failures++;
        }
      }
    }),
  );
  storming = false;
  return { back, total: conns.length, attempts, failures, ms: nowMs() - t0 };
}

serveRpc({
  connect: (a: ConnectArgs) => connect(a),
  stats: () => ({
    received,
    hist: hist.toJSON(),
    firstRecv,
    lastRecv,
    open: conns.filter((c) => c.ws && c.ws.readyState === OPEN).length,
    joined: conns.filter((c) => c.done).length,
    unexpectedCloses,
    errors,
    joinErrors,
  }),
  watched: () => Object.fromEntries(watched),
  reset: () => {
    watched.clear();
    hist.reset();
    received = 0;
    firstRecv = Infinity;
    lastRecv = 0;
    return true;
  },
  /** Resolves once `expect` broadcasts arrived or `timeoutMs` passed (whichever first). */
  waitReceived: async (w: { expect: number; timeoutMs: number; quietMs?: number }) => {
    const end = nowMs() + w.timeoutMs;
    while (received < w.expect && nowMs() < end) await sleep(20);
    return { received, lastRecv };
  },
  storm: (s: { timeoutMs: number; backoffMs: number[] }) => storm(s),
  closeAll: () => {
    storming = true;
    for (const c of conns) c.ws?.terminate();
    conns.length = 0;
    if (hbTimer) clearInterval(hbTimer);
    hbTimer = null;
    return true;
  },
  exit: () => {
    setTimeout(() => process.exit(0), 10);
    return true;
  },
});
process.send?.({ ready: true, pid: process.pid });
