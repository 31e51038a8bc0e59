/**
 * (i) Token streams at scale (issue 21): N concurrent text tasks, each streaming R tokens/s for
 * S seconds from the Replicate stand-in (in this process, real time, `openai/gpt-4.1` with a
 * `tokens` timeline). Gateway A (src/main.ts, PostgreSQL, runner on) runs them; the subscribers
 * (one Phoenix v2 socket per task joined to `task:<id>`, in a child process) are on gateway B
 * (RUNNER_ENABLED=false), so each delta crosses processes as in production; a row with the
 * subscribers on A itself beside it. In the same run, a reference relay (bench/servers/sse-relay.ts:
 * undici reads the same SSE streams, each chunk goes to a `ws` socket, no database): the floor
 * that durability costs against.
 *
 * Reported per row: per-delta lag p50/p99/max from the stand-in's emission of the last token a
 * delta carries to its receipt (one wall clock); the `*_response` lag after the stream's `done`;
 * deltas a stream received; streams complete and gap-free (text equal to the stand-in's, every seq
 * once and in order); CPU of A, B and the PostgreSQL backends of the bench database (% of one
 * core over the streaming span) and CPU per delivered token against the relay's; database
 * transactions/s (pg_stat_database).
 *
 *   npx tsx bench/scenarios/streams.ts [--streams=1000] [--rate=50] [--seconds=10] [--sides=B,A]
 *     [--reference=true] [--baseline=<checkout>] [--port=4900]
 *
 * `--streams=300,1000,3000` runs each size in turn. `--baseline=<dir>`: the side-B row again with
 * the gateway of another checkout (e.g. `git worktree add /tmp/pyre-main main`, then link its
 * node_modules), in the same run, so a change shows as a ratio on a busy machine.
 */
import { existsSync } from 'node:fs';
import { loadavg } from 'node:os';
import { join, resolve } from 'node:path';
import { request } from 'undici';
import { TokenSigner } from '../../src/auth/tokens';
import { openDatabase, type Db } from '../../src/db';
import { startStandin, type Standin } from '../../src/providers/replicate/standin';
import { sleep } from '../lib/clock';
import {
  AUTH_SECRET,
  freshDatabase,
  postJson,
  processTree,
  startGateway,
  stopGateway,
  type GatewayProc,
} from '../lib/gateway';
import {
  BENCH_DIR,
  deadline,
  fmt,
  log,
  opt,
  optList,
  printTable,
  type Proc,
  type Row,
  spawnTs,
  stopAll,
  writeResult,
} from '../lib/harness';
import { Hist } from '../lib/hist';
import { sampleProc, sampleProcs } from '../lib/proc';

const MODEL = 'openai/gpt-4.1';
const TASKS_PER_USER = 100;

export interface StreamsRow {
  /** `pyre` (this checkout), `baseline` (--baseline) or `relay` (the reference). */
  code: string;
  /** Where the subscribers are: `B` (the other process), `A` (the runner's own), or `relay`. */
  side: string;
  streams: number;
  rate: number;
  seconds: number;
  tokensPerSecond: number;
  deltasPerStream: number;
  lagP50: number;
  lagP99: number;
  lagMax: number;
  responseP50: number;
  responseP99: number;
  complete: number;
  cpuA: number;
  cpuB: number;
  cpuPg: number;
  cpuRelay: number;
  /** CPU (µs) of the serving processes (A + B + PostgreSQL, or the relay) per delivered token. */
  cpuUsPerToken: number;
  xactPerSecond: number;
  spanS: number;
  loadavg: number[];
}

interface Received {
  at: number[];
  end: number[];
  text: string;
  seqErrors: number;
  responseAt: number | null;
}

/** What one stream was expected to carry: its tokens, with the time each was emitted, and when it ended. */
interface Emitted {
  cum: number[];
  emittedAt: number[];
  text: string;
  doneAt: number;
}

function emitted(standin: Standin, predictionId: string): Emitted | null {
  const p = standin.predictions.get(predictionId);
  if (!p) return null;
  const cum: number[] = [];
  const at: number[] = [];
  let text = '';
  let doneAt = NaN;
  for (const e of p.events) {
    if (e.event === 'output') {
      text += e.data;
      cum.push(text.length);
      at.push(e.emittedAt);
    } else if (e.event === 'done') doneAt = e.emittedAt;
  }
  return { cum, emittedAt: at, text, doneAt };
}

/** The first token whose end is at or after `end` (the last token a delta ending there carries). */
function tokenAt(cum: number[], end: number): number {
  let lo = 0;
  let hi = cum.length - 1;
  while (lo < hi) {
    const mid = (lo + hi) >> 1;
    if (cum[mid]! >= end) hi = mid;
    else lo = mid + 1;
  }
  return lo;
}

/** Lags, completeness, and the span from the first token emitted to the last stream's end. */
function judge(pairs: Array<[Received | undefined, Emitted | null]>, seqChecked: boolean) {
  const lag = new Hist();
  const resp = new Hist();
  let complete = 0;
  let deltas = 0;
  let tokens = 0;
  let first = Infinity;
  let last = 0;
  for (const [r, e] of pairs) {
    if (!r || !e) continue;
    deltas += r.at.length;
    if (r.text === e.text && (!seqChecked || r.seqErrors === 0)) complete++;
    tokens += e.cum.length;
    if (e.emittedAt.length) first = Math.min(first, e.emittedAt[0]!);
    if (Number.isFinite(e.doneAt)) last = Math.max(last, e.doneAt);
    for (let j = 0; j < r.at.length; j++) {
      const k = tokenAt(e.cum, r.end[j]!);
      lag.record(Math.max(0, r.at[j]! - e.emittedAt[k]!));
    }
    if (r.responseAt !== null && Number.isFinite(e.doneAt)) resp.record(Math.max(0, r.responseAt - e.doneAt));
  }
  return { lag, resp, complete, deltas, tokens, spanS: (last - first) / 1000 };
}

/**
 * A row of the table from a run's judgement: `cpu` holds the CPU seconds of each serving process
 * over the run (A, B, PostgreSQL, or the relay), turned into % of a core over the streaming span
 * and µs per delivered token.
 */
function streamsRow(
  code: string,
  side: string,
  n: number,
  j: ReturnType<typeof judge>,
  load: number[],
  cpu: { a: number; b: number; pg: number; relay: number; xactPerSecond: number },
): StreamsRow {
  const span = Math.max(j.spanS, 0.001);
  return {
    code,
    side,
    streams: n,
    rate: opt('rate', 50),
    seconds: opt('seconds', 10),
    tokensPerSecond: j.tokens / span,
    deltasPerStream: j.deltas / n,
    lagP50: j.lag.percentile(50),
    lagP99: j.lag.percentile(99),
    lagMax: j.lag.max,
    responseP50: j.resp.percentile(50),
    responseP99: j.resp.percentile(99),
    complete: j.complete,
    cpuA: (cpu.a / span) * 100,
    cpuB: (cpu.b / span) * 100,
    cpuPg: (cpu.pg / span) * 100,
    cpuRelay: (cpu.relay / span) * 100,
    cpuUsPerToken: ((cpu.a + cpu.b + cpu.pg + cpu.relay) / Math.max(1, j.tokens)) * 1e6,
    xactPerSecond: cpu.xactPerSecond,
    spanS: span,
    loadavg: load,
  };
}

/** The gateway of `root` (this checkout or --baseline's), ready when /readyz answers. */
function startGatewayAt(root: string, port: number, env: Record<string, string>): Promise<GatewayProc> {
  return startGateway(port, { RATE_LIMIT_TASKS_PER_MINUTE: '0', ...env }, { root, readyMs: 90_000 });
}

/** A stand-in whose gpt-4.1 streams `rate` × `seconds` tokens, starting after `queueMs`. */
async function standinFor(n: number, queueMs: number): Promise<Standin> {
  const standin = await startStandin({ clock: { speed: 1 } });
  standin.faults.rateLimits = { createPerMinute: 10_000_000, otherPerMinute: 10_000_000 };
  standin.faults.timelines[MODEL] = {
    queueMs,
    processingMs: opt('seconds', 10) * 1000,
    tokens: opt('rate', 50) * opt('seconds', 10),
  };
  log(`streams: stand-in for ${n} streams, ${queueMs} ms before the first token`);
  return standin;
}

/** The PostgreSQL backends serving `db` now. */
async function backends(db: Db, name: string): Promise<number[]> {
  const rows = (await db.raw('SELECT pid FROM pg_stat_activity WHERE datname = ?', [name])) as {
    rows: Array<{ pid: number }>;
  };
  return rows.rows.map((r) => r.pid);
}

async function transactions(db: Db, name: string): Promise<number> {
  const r = (await db.raw('SELECT (xact_commit + xact_rollback)::bigint AS n FROM pg_stat_database WHERE datname = ?', [
    name,
  ])) as { rows: Array<{ n: string }> };
  return Number(r.rows[0]?.n ?? 0);
}

async function waitEnded(clients: Proc, n: number, timeoutMs: number): Promise<number> {
  const end = Date.now() + timeoutMs;
  let ended = 0;
  while (Date.now() < end) {
    ended = await clients.rpc.call<number>('ended');
    if (ended >= n) break;
    await sleep(250);
  }
  return ended;
}

/** One run of pyre: N tasks on A, subscribers on `side`, the gateway of `root`. */
async function runPyre(code: string, root: string, side: 'A' | 'B', n: number, clients: Proc): Promise<StreamsRow> {
  const port = opt('port', 4900);
  const queueMs = 3000 + 6 * n;
  const standin = await standinFor(n, queueMs);
  const dbName = 'pyre_bench_streams';
  const dbUrl = freshDatabase(dbName);
  const big = String(n + 1000);
  const a = await startGatewayAt(root, port, {
    DATABASE_URL: dbUrl,
    RUNNER_ENABLED: 'true',
    REPLICATE_API_TOKEN: standin.token,
    REPLICATE_BASE_URL: standin.url,
    PROVIDER_CREATES_PER_MINUTE: '10000000',
    PROVIDER_READS_PER_MINUTE: '10000000',
    RUNNER_CONCURRENCY: big,
    RUNNER_GLOBAL_CONCURRENCY: big,
    RUNNER_USER_CONCURRENCY: big,
    RUNNER_MODEL_CONCURRENCY: big,
  });
  const b = side === 'B' ? await startGatewayAt(root, port + 1, { DATABASE_URL: dbUrl, RUNNER_ENABLED: 'false' }) : a;
  const db = openDatabase({ databaseUrl: dbUrl, pool: { min: 1, max: 1 } });
  const signer = new TokenSigner(AUTH_SECRET);
  try {
    // The tasks, from n / 100 users, 16 requests at a time.
    const ids: Array<{ id: string; user: string }> = [];
    let next = 0;
    await Promise.all(
      Array.from({ length: 16 }, async () => {
        while (next < n) {
          const i = next++;
          const user = `user-${Math.floor(i / TASKS_PER_USER)}`;
          const r = await postJson(`${a.url}/api/tasks`, signer.mint(user, 3600), {
            input_data: { type: 'text', model: 'gpt-4.1', prompt: `stream #${i}` },
          });
          if (r.status !== 202) throw new Error(`POST /api/tasks → ${r.status} ${JSON.stringify(r.json)}`);
          ids.push({ id: (r.json as { task_id: string }).task_id, user });
        }
      }),
    );
    // One socket per task, joined after seq 1: whatever happened meanwhile is replayed, then live.
    const byUser = new Map<string, string[]>();
    for (const t of ids) byUser.set(t.user, [...(byUser.get(t.user) ?? []), `task:${t.id}`]);
    let joined = 0;
    for (const [user, topics] of byUser)
      joined += await clients.rpc.call<number>(
        'phoenix',
        { url: b.url.replace('http', 'ws'), token: signer.mint(user, 3600), topics, lastSeq: 1 },
        120_000,
      );
    log(`streams ${code}/${side}: ${n} tasks, ${joined} subscribers joined on ${side}`);
    const load = loadavg();
    const pg0 = await backends(db, dbName);
    const x0 = await transactions(db, dbName);
    const c0 = { a: sampleProcs(processTree(a.pid)).cpuSec, b: sampleProcs(processTree(b.pid)).cpuSec };
    const pgCpu0 = new Map(pg0.map((p) => [p, sampleProc(p).cpuSec]));
    const t0 = Date.now();
    const ended = await waitEnded(clients, n, queueMs + opt('seconds', 10) * 1000 + 120_000);
    const t1 = Date.now();
    if (ended < n) log(`streams ${code}/${side}: only ${ended}/${n} streams ended`);
    const c1 = { a: sampleProcs(processTree(a.pid)).cpuSec, b: sampleProcs(processTree(b.pid)).cpuSec };
    let pgCpu = 0;
    for (const p of new Set([...pg0, ...(await backends(db, dbName))])) {
      const now = sampleProc(p).cpuSec;
      if (Number.isFinite(now)) pgCpu += now - (pgCpu0.get(p) ?? 0);
    }
    await sleep(1200); // pg_stat_database is updated at most once a second
    const x1 = await transactions(db, dbName);
    const received = await clients.rpc.call<Record<string, Received>>('collect', {}, 120_000);
    await clients.rpc.call('reset');
    const preds = (await db('tasks')
      .whereIn(
        'id',
        ids.map((t) => t.id),
      )
      .select('id', 'prediction_id')) as Array<{ id: string; prediction_id: string | null }>;
    const j = judge(
      preds.map((p) => [received[`task:${p.id}`], p.prediction_id ? emitted(standin, p.prediction_id) : null]),
      true,
    );
    return streamsRow(code, side, n, j, load, {
      a: c1.a - c0.a,
      b: side === 'B' ? c1.b - c0.b : 0,
      pg: pgCpu,
      relay: 0,
      xactPerSecond: (x1 - x0) / ((t1 - t0) / 1000),
    });
  } finally {
    await db.destroy();
    if (b !== a) await stopGateway(b);
    await stopGateway(a);
    await standin.close();
  }
}

/** The reference relay: the same streams straight from the stand-in to a socket, no database. */
async function runRelay(n: number, clients: Proc): Promise<StreamsRow> {
  const queueMs = 3000 + 6 * n;
  const standin = await standinFor(n, queueMs);
  const relay = await spawnTs(join(BENCH_DIR, 'servers', 'sse-relay.ts'), 'relay', { PORT: '0' });
  try {
    const streams: Array<{ key: string; streamUrl: string }> = [];
    let next = 0;
    await Promise.all(
      Array.from({ length: 16 }, async () => {
        while (next < n) {
          const i = next++;
          const r = await request(`${standin.url}/models/${MODEL}/predictions`, {
            method: 'POST',
            headers: { authorization: `Bearer ${standin.token}`, 'content-type': 'application/json' },
            body: JSON.stringify({ input: { prompt: `stream #${i}` } }),
          });
          const p = (await r.body.json()) as { id: string; urls: { stream: string } };
          streams.push({ key: p.id, streamUrl: p.urls.stream });
        }
      }),
    );
    await clients.rpc.call('relay', { url: `ws://127.0.0.1:${relay.port}`, streams }, 120_000);
    log(`streams relay: ${n} streams connected`);
    const load = loadavg();
    const c0 = sampleProc(relay.pid).cpuSec;
    await waitEnded(clients, n, queueMs + opt('seconds', 10) * 1000 + 120_000);
    const cpu = sampleProc(relay.pid).cpuSec - c0;
    const received = await clients.rpc.call<Record<string, Received>>('collect', {}, 120_000);
    await clients.rpc.call('reset');
    const j = judge(
      streams.map((s) => [received[s.key], emitted(standin, s.key)]),
      false,
    );
    return streamsRow('relay', 'relay', n, j, load, { a: 0, b: 0, pg: 0, relay: cpu, xactPerSecond: 0 });
  } finally {
    await stopAll([relay]);
    await standin.close();
  }
}

export async function runStreams(): Promise<StreamsRow[]> {
  const bound = deadline(opt('max-seconds', 3600) * 1000, 'streams');
  const sizes = optList('streams', ['1000']).map(Number);
  const sides = optList('sides', ['B', 'A']) as Array<'A' | 'B'>;
  const baseline = opt('baseline', '');
  if (baseline && !existsSync(join(baseline, 'src', 'main.ts')))
    throw new Error(`--baseline=${baseline}: no src/main.ts there (a checkout of pyre with node_modules expected)`);
  const clients = await spawnTs(join(BENCH_DIR, 'lib', 'stream-clients.ts'), 'stream-clients', {});
  const rows: StreamsRow[] = [];
  try {
    for (const n of sizes) {
      if (opt('reference', true)) rows.push(await runRelay(n, clients));
      for (const side of sides) rows.push(await runPyre('pyre', resolve(BENCH_DIR, '..'), side, n, clients));
      if (baseline) rows.push(await runPyre('baseline', resolve(baseline), 'B', n, clients));
      for (const r of rows.filter((x) => x.streams === n)) log(`streams: ${JSON.stringify(r)}`);
    }
  } finally {
    await stopAll([clients]);
    clearTimeout(bound);
  }
  report(rows);
  return rows;
}

export function report(rows: StreamsRow[]): string {
  const relayOf = (n: number) => rows.find((r) => r.code === 'relay' && r.streams === n);
  const table: Row[] = rows.map((r) => {
    const ref = relayOf(r.streams);
    return {
      code: r.code,
      subscribers: r.side,
      streams: r.streams,
      'tokens/s in all': fmt(r.tokensPerSecond, 0),
      'deltas a stream received': fmt(r.deltasPerStream, 1),
      'delta lag p50 / p99 / max ms': `${fmt(r.lagP50, 0)} / ${fmt(r.lagP99, 0)} / ${fmt(r.lagMax, 0)}`,
      'end lag p50 / p99 ms': `${fmt(r.responseP50, 0)} / ${fmt(r.responseP99, 0)}`,
      'complete, gap-free': `${r.complete}/${r.streams}`,
      'CPU % A / B / PG':
        r.code === 'relay'
          ? `relay ${fmt(r.cpuRelay, 0)}`
          : `${fmt(r.cpuA, 0)} / ${fmt(r.cpuB, 0)} / ${fmt(r.cpuPg, 0)}`,
      'CPU µs/token (× relay)': `${fmt(r.cpuUsPerToken, 1)}${ref && r !== ref ? ` (${fmt(r.cpuUsPerToken / ref.cpuUsPerToken, 1)}×)` : ''}`,
      'db xact/s': fmt(r.xactPerSecond, 0),
      'load avg': r.loadavg.map((x) => x.toFixed(1)).join(' '),
    };
  });
  const out = printTable(
    `(i) token streams: ${rows[0]?.rate ?? 0} tokens/s × ${rows[0]?.seconds ?? 0} s per stream, lag from the stand-in's emission`,
    table,
  );
  writeResult('streams', { rows });
  return out;
}

if (require.main === module) {
  runStreams().then(
    () => process.exit(0),
    (e: unknown) => {
      console.error(e);
      process.exit(1);
    },
  );
}
