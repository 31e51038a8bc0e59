/**
 * The parent side of every scenario: starts server and generator processes (and kills them all on
 * the way out, however the run ends), spreads connections over generators and loopback source
 * addresses, samples /proc for the servers and generators separately, prints tables, writes JSON.
 */
import { type ChildProcess, fork } from 'node:child_process';
import { mkdirSync, writeFileSync } from 'node:fs';
import { cpus, loadavg, totalmem } from 'node:os';
import { join, resolve } from 'node:path';
import { nowMs, sleep } from './clock';
import type { ConnectArgs, Target } from './generator';
import { Hist, type HistData } from './hist';
import { RpcClient } from './ipc';
import { type ProcSample, sampleProcs } from './proc';
import type { Proto } from './protocols';

export const BENCH_DIR = resolve(__dirname, '..');
export const RESULTS_DIR = join(BENCH_DIR, 'results');

export type ServerKind = 'ws' | 'sio' | 'pyre';
export const PROTO: Record<ServerKind, Proto> = { ws: 'ws', sio: 'sio', pyre: 'phoenix' };

export interface Proc {
  name: string;
  child: ChildProcess;
  rpc: RpcClient;
  pid: number;
  port?: number;
}

const live = new Set<ChildProcess>();
function killAll(): void {
  for (const c of live) {
    try {
      c.kill('SIGKILL');
    } catch {
      /* already gone */
    }
  }
  live.clear();
}
process.on('exit', killAll);
for (const sig of ['SIGINT', 'SIGTERM'] as const) {
  process.on(sig, () => {
    killAll();
    process.exit(130);
  });
}

/** Command-line options as `--name=value`; numbers are parsed, `--flag` alone is true. */
export function opt<T extends string | number | boolean>(name: string, dflt: T): T {
  const hit = process.argv.find((a) => a === `--${name}` || a.startsWith(`--${name}=`));
  if (!hit) return dflt;
  const v = hit.includes('=') ? hit.slice(hit.indexOf('=') + 1) : 'true';
  if (typeof dflt === 'number') return Number(v) as T;
  if (typeof dflt === 'boolean') return (v !== 'false') as T;
  return v as T;
}

export function optList(name: string, dflt: string[]): string[] {
  const v: string = opt<string>(name, '');
  return v ? v.split(',') : dflt;
}

/** Forks a TypeScript entry through tsx and waits for its `{ready}` message. */
export async function spawnTs(
  file: string,
  name: string,
  env: Record<string, string>,
  extraArgv: string[] = [],
  readyMs = 30_000,
): Promise<Proc> {
  const child = fork(file, [], {
    execArgv: ['--import', 'tsx', '--expose-gc', ...extraArgv],
    env: { ...process.env, ...env },
    stdio: ['ignore', 'inherit', 'inherit', 'ipc'],
  });
  live.add(child);
  child.on('exit', () => live.delete(child));
  const ready = await new Promise<{ port?: number }>((res, rej) => {
    const timer = setTimeout(() => rej(new Error(`${name} not ready after ${readyMs} ms`)), readyMs);
    child.on('message', (m: unknown) => {
      const msg = m as { ready?: boolean; port?: number };
      if (msg && msg.ready) {
        clearTimeout(timer);
        res(msg);
      }
    });
    child.on('exit', (code) => {
      clearTimeout(timer);
      rej(new Error(`${name} exited with ${code} before ready`));
    });
  });
  return { name, child, rpc: new RpcClient(child, name), pid: child.pid!, port: ready.port };
}

export interface ServerOpts {
  port: number;
  env?: Record<string, string>;
  cpuProf?: boolean;
  /** Extra node flags. */
  argv?: string[];
}

export async function startServer(kind: ServerKind, o: ServerOpts, name: string = kind): Promise<Proc> {
  const argv = [...(o.argv ?? [])];
  if (o.cpuProf) {
    mkdirSync(join(RESULTS_DIR, 'prof'), { recursive: true });
    argv.push('--cpu-prof', `--cpu-prof-dir=${join(RESULTS_DIR, 'prof')}`);
  }
  return spawnTs(join(BENCH_DIR, 'servers', `${kind}.ts`), name, { PORT: String(o.port), ...(o.env ?? {}) }, argv);
}

/**
 * Starts `n` processes of one server kind on consecutive ports. For pyre the harness relays pubsub
 * messages between them (see servers/pyre.ts); the references have no pubsub, so a multi-process
 * publish triggers each of their processes directly (an ideal, free pubsub).
 */
export async function startServers(kind: ServerKind, n: number, port: number, cpuProf = false): Promise<Proc[]> {
  const procs = await Promise.all(
    Array.from({ length: n }, (_, i) =>
      startServer(
        kind,
        { port: port + i, cpuProf, env: { NODE_INDEX: String(i), NODE_COUNT: String(n) } },
        `${kind}#${i}`,
      ),
    ),
  );
  if (kind === 'pyre' && n > 1) relayPubSub(procs);
  return procs;
}

/** The bench's cross-process broker: whatever one pyre process publishes reaches all the others. */
function relayPubSub(procs: Proc[]): void {
  for (const p of procs) {
    p.child.on('message', (m: unknown) => {
      const msg = m as { pubsub?: unknown };
      if (!msg || msg.pubsub === undefined) return;
      for (const q of procs) if (q !== p && q.child.connected) q.child.send(msg);
    });
  }
}

export async function startGenerators(n: number): Promise<Proc[]> {
  return Promise.all(
    Array.from({ length: n }, (_, i) => spawnTs(join(BENCH_DIR, 'lib', 'generator.ts'), `gen#${i}`, {})),
  );
}

export async function stopAll(procs: Proc[]): Promise<void> {
  await Promise.all(
    procs.map(async (p) => {
      try {
        await p.rpc.call('exit', {}, 3000);
      } catch {
        /* fall through to kill */
      }
      await new Promise<void>((res) => {
        if (p.child.exitCode !== null || p.child.signalCode !== null) return res();
        const t = setTimeout(() => {
          p.child.kill('SIGKILL');
          res();
        }, 3000);
        p.child.once('exit', () => {
          clearTimeout(t);
          res();
        });
      });
    }),
  );
}

const salt = 1 + Math.floor(Math.random() * 250);
/** Four loopback source addresses per generator, different in every run (avoids TIME_WAIT reuse). */
export function sourceAddresses(gen: number): string[] {
  return [0, 1, 2, 3].map((k) => `127.${salt}.${gen + 1}.${k + 1}`);
}

export interface SpreadArgs extends Omit<ConnectArgs, 'count' | 'base' | 'localAddresses'> {
  total: number;
  /** Global index of the first connection (to add more connections later without re-using topics). */
  base?: number;
}

export interface ConnectSummary {
  joined: number;
  failed: number;
  retries: number;
  wallMs: number;
}

/** Splits `total` connections over the generators and waits until every one is joined or failed. */
export async function connectSpread(gens: Proc[], a: SpreadArgs): Promise<ConnectSummary> {
  const t0 = nowMs();
  const per = Math.ceil(a.total / gens.length);
  const rs = await Promise.all(
    gens.map((g, i) => {
      const count = Math.max(0, Math.min(per, a.total - i * per));
      const { total: _t, base, ...rest } = a;
      const args: ConnectArgs = { ...rest, count, base: (base ?? 0) + i * per, localAddresses: sourceAddresses(i) };
      return g.rpc.call<{ joined: number; failed: number; retries: number }>('connect', args, a.timeoutMs + 30_000);
    }),
  );
  return {
    joined: rs.reduce((s, r) => s + r.joined, 0),
    failed: rs.reduce((s, r) => s + r.failed, 0),
    retries: rs.reduce((s, r) => s + r.retries, 0),
    wallMs: nowMs() - t0,
  };
}

export interface GenStats {
  received: number;
  hist: Hist;
  firstRecv: number;
  lastRecv: number;
  open: number;
  joined: number;
  unexpectedCloses: number;
  errors: number;
}

export async function genStats(gens: Proc[]): Promise<GenStats> {
  const rs = await Promise.all(
    gens.map((g) =>
      g.rpc.call<{
        received: number;
        hist: HistData;
        firstRecv: number;
        lastRecv: number;
        open: number;
        joined: number;
        unexpectedCloses: number;
        errors: number;
      }>('stats'),
    ),
  );
  return {
    received: rs.reduce((s, r) => s + r.received, 0),
    hist: Hist.from(rs.map((r) => r.hist)),
    firstRecv: Math.min(...rs.map((r) => (r.firstRecv === null ? Infinity : r.firstRecv))),
    lastRecv: Math.max(...rs.map((r) => r.lastRecv)),
    open: rs.reduce((s, r) => s + r.open, 0),
    joined: rs.reduce((s, r) => s + r.joined, 0),
    unexpectedCloses: rs.reduce((s, r) => s + r.unexpectedCloses, 0),
    errors: rs.reduce((s, r) => s + r.errors, 0),
  };
}

export async function waitReceived(gens: Proc[], expectTotal: number, timeoutMs: number): Promise<number> {
  const end = nowMs() + timeoutMs;
  for (;;) {
    const rs = await Promise.all(gens.map((g) => g.rpc.call<{ received: number }>('stats')));
    const n = rs.reduce((s, r) => s + r.received, 0);
    if (n >= expectTotal || nowMs() > end) return n;
    await sleep(50);
  }
}

export function pids(ps: Proc[]): number[] {
  return ps.map((p) => p.pid);
}

export function sample(ps: Proc[]): ProcSample {
  return sampleProcs(pids(ps));
}

export async function gcAll(ps: Proc[]): Promise<void> {
  await Promise.all(ps.map((p) => p.rpc.call('gc', {}, 30_000).catch(() => undefined)));
}

/** Fails the whole run if it exceeds `ms`: every scenario is bounded in time. */
export function deadline(ms: number, what: string): NodeJS.Timeout {
  return setTimeout(() => {
    console.error(`${what}: exceeded its ${Math.round(ms / 1000)} s bound, stopping`);
    killAll();
    process.exit(2);
  }, ms);
}

export function machine(): Record<string, unknown> {
  const c = cpus();
  return {
    cpus: c.length,
    cpuModel: c[0]?.model,
    memGiB: Math.round(totalmem() / 2 ** 30),
    node: process.version,
    date: new Date().toISOString(),
    /** Other work on this shared machine at the time of writing (1, 5, 15 min). */
    loadavg: loadavg(),
  };
}

export function writeResult(name: string, data: unknown): string {
  mkdirSync(RESULTS_DIR, { recursive: true });
  const stamp = new Date().toISOString().replace(/[:.]/g, '-');
  const body = JSON.stringify(
    { scenario: name, machine: machine(), command: process.argv.slice(1).join(' '), ...(data as object) },
    null,
    2,
  );
  writeFileSync(join(RESULTS_DIR, `${name}-${stamp}.json`), body);
  writeFileSync(join(RESULTS_DIR, `${name}.json`), body);
  return join(RESULTS_DIR, `${name}.json`);
}

export type Row = Record<string, string | number>;

export function fmt(n: number, digits = 1): string {
  if (!Number.isFinite(n)) return '—';
  if (Math.abs(n) >= 1000) return Math.round(n).toLocaleString('en-US');
  return n.toFixed(digits);
}

/** Every table printed in this process, for run-all's combined report. */
export const printedTables: string[] = [];

/** Prints rows as a markdown table (also valid to paste into RESULTS.md). */
export function printTable(title: string, rows: Row[]): string {
  if (rows.length === 0) return '';
  const cols = Object.keys(rows[0]!);
  const cells = rows.map((r) => cols.map((c) => String(r[c] ?? '')));
  const w = cols.map((c, i) => Math.max(c.length, ...cells.map((r) => r[i]!.length)));
  const line = (xs: string[]): string => `| ${xs.map((x, i) => x.padEnd(w[i]!)).join(' | ')} |`;
  const out = [
    `\n### ${title}\n`,
    line(cols),
    `|${w.map((n) => '-'.repeat(n + 2)).join('|')}|`,
    ...cells.map(line),
  ].join('\n');
  console.log(out);
  printedTables.push(out);
  return out;
}

export function log(...a: unknown[]): void {
  console.error(`[${new Date().toISOString().slice(11, 19)}]`, ...a);
}

export type { Target };
