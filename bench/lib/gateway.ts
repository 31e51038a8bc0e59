/**
 * Starts the real gateway (src/main.ts) for the task scenarios: a fresh PostgreSQL database per run,
 * one or more gateway processes, readiness by GET /readyz, and a small HTTP client with latency
 * recording. The gateway's own CPU is read from /proc for the process and its cluster workers.
 */
import { type ChildProcess, execFileSync, spawn } from 'node:child_process';
import { existsSync, readFileSync, readdirSync } from 'node:fs';
import { join } from 'node:path';
import { Agent, request } from 'undici';
import { nowMs, sleep } from './clock';
import { BENCH_DIR } from './harness';

export const PG_ADMIN_URL = process.env.BENCH_PG_URL ?? 'postgres://postgres@127.0.0.1:5432/postgres';
export const AUTH_SECRET = 'bench-gateway-secret-0123456789abcdef0123456789';

const started = new Set<ChildProcess>();
process.on('exit', () => {
  for (const c of started) c.kill('SIGKILL');
});

/**
 * Drops and re-creates a database; returns its URL. `syncCommit: false` sets the database's
 * synchronous_commit off (commits do not wait for the WAL fsync, ~10 ms on this machine's disk),
 * to show the gateway's own ceiling apart from the disk's; it is labelled wherever it is used.
 */
export function freshDatabase(name: string, syncCommit = true): string {
  const psql = (sql: string): void => {
    execFileSync('psql', [PG_ADMIN_URL, '-q', '-v', 'ON_ERROR_STOP=1', '-c', sql], {
      stdio: ['ignore', 'ignore', 'inherit'],
    });
  };
  psql(`DROP DATABASE IF EXISTS ${name} WITH (FORCE)`);
  psql(`CREATE DATABASE ${name}`);
  if (!syncCommit) psql(`ALTER DATABASE ${name} SET synchronous_commit = off`);
  return PG_ADMIN_URL.replace(/\/[^/]*$/, `/${name}`);
}

export interface GatewayProc {
  child: ChildProcess;
  pid: number;
  port: number;
  url: string;
}

/**
 * The gateway as the scenarios run it: `src/main.ts` under tsx by default; with PYRE_BENCH_BUILT=1
 * the compiled `dist/src/main.js` as production runs it (`npm run build` first), which leaves out
 * tsx's compiler and its caches from the gateway's memory.
 */
function gatewayEntry(root: string): string[] {
  if (process.env.PYRE_BENCH_BUILT !== '1') return ['--import', 'tsx', join(root, 'src', 'main.ts')];
  const main = join(root, 'dist', 'src', 'main.js');
  if (!existsSync(main)) throw new Error(`PYRE_BENCH_BUILT=1 but ${main} is missing: run npm run build first`);
  return [main];
}

export interface StartOptions {
  /** Run it with --cpu-prof (profiles in bench/results/prof). */
  cpuProf?: boolean;
  /** How long it may take to answer /readyz 200 (default 60 s). */
  readyMs?: number;
  /** The checkout to run the gateway from: this one (default), or another commit's (lib/baseline.ts, --baseline). */
  root?: string;
}

/**
 * Starts a gateway on `port` (env over the bench defaults: no runner, no per-user rate limit,
 * no per-address connection cap) and waits until its /readyz answers 200. BENCH_GATEWAY_LOGS=1
 * shows its stdout (its log) too.
 */
export async function startGateway(
  port: number,
  env: Record<string, string>,
  opts: StartOptions = {},
): Promise<GatewayProc> {
  const { cpuProf = false, readyMs = 60_000, root = join(BENCH_DIR, '..') } = opts;
  const prof = cpuProf ? ['--cpu-prof', `--cpu-prof-dir=${join(BENCH_DIR, 'results', 'prof')}`] : [];
  const child = spawn(process.execPath, [...prof, ...gatewayEntry(root)], {
    cwd: root,
    env: {
      ...process.env,
      PORT: String(port),
      HOST: '127.0.0.1',
      AUTH_SECRET,
      LOG_LEVEL: 'warn',
      RUNNER_ENABLED: 'false',
      RATE_LIMIT_TASKS_PER_MINUTE: '10000000',
      // Every load client connects from 127.0.0.1.
      MAX_CONNECTIONS_PER_ADDRESS: '0',
      ...env,
    },
    stdio: ['ignore', process.env.BENCH_GATEWAY_LOGS === '1' ? 'inherit' : 'ignore', 'inherit'],
  });
  started.add(child);
  child.on('exit', () => started.delete(child));
  const url = `http://127.0.0.1:${port}`;
  const end = nowMs() + readyMs;
  while (nowMs() < end) {
    if (child.exitCode !== null) throw new Error(`gateway (${root}) on ${port} exited with ${child.exitCode}`);
    try {
      const r = await request(`${url}/readyz`);
      await r.body.dump();
      if (r.statusCode === 200) return { child, pid: child.pid!, port, url };
    } catch {
      /* not listening yet */
    }
    await sleep(200);
  }
  throw new Error(`gateway (${root}) on ${port} not ready after ${readyMs} ms`);
}

export async function stopGateway(g: GatewayProc): Promise<void> {
  if (g.child.exitCode !== null || g.child.signalCode !== null) return;
  g.child.kill('SIGTERM');
  await new Promise<void>((res) => {
    const t = setTimeout(() => {
      g.child.kill('SIGKILL');
      res();
    }, 10_000);
    g.child.once('exit', () => {
      clearTimeout(t);
      res();
    });
  });
}

/** A process and all its descendants (cluster workers), from /proc/<pid>/task/<tid>/children. */
export function processTree(pid: number): number[] {
  const out = [pid];
  try {
    for (const tid of readdirSync(`/proc/${pid}/task`)) {
      const kids = readFileSync(`/proc/${pid}/task/${tid}/children`, 'utf8').trim();
      if (kids) for (const k of kids.split(/\s+/)) out.push(...processTree(Number(k)));
    }
  } catch {
    /* gone */
  }
  return out;
}

export const httpAgent = new Agent({ connections: 256, pipelining: 1, keepAliveTimeout: 30_000 });

export async function postJson(
  url: string,
  token: string,
  body: unknown,
  headers: Record<string, string> = {},
): Promise<{ status: number; json: unknown }> {
  const r = await request(url, {
    method: 'POST',
    dispatcher: httpAgent,
    headers: { 'content-type': 'application/json', authorization: `Bearer ${token}`, ...headers },
    body: JSON.stringify(body),
  });
  const text = await r.body.text();
  let json: unknown;
  try {
    json = JSON.parse(text);
  } catch {
    json = text;
  }
  return { status: r.statusCode, json };
}
