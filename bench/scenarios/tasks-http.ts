/**
 * (e) `POST /api/tasks` on PostgreSQL: the real gateway (src/main.ts) on a fresh database, task
 * runner off (so only the API, validation, the insert and its event are measured), tokens on,
 * rate limit raised. A closed loop of C concurrent keep-alive clients in the harness sends N
 * requests after a warm-up. Reported: requests/s, p50/p99, the gateway's CPU per request.
 * Runs with 1 gateway process and with WORKERS=2 (Node cluster, one port), each with PostgreSQL's
 * synchronous_commit on (durable: every commit waits for a WAL fsync, ~10 ms on this disk) and off
 * (shows the gateway's own ceiling apart from the disk's).
 *
 *   npx tsx bench/scenarios/tasks-http.ts [--requests=5000] [--concurrency=32] [--workers=1,2] [--sync-commit=on,off] [--log-level=warn]
 *     [--baseline=<commit> [--rounds=3]] [--rate-limit=<per minute>] [--db=pyre_bench_http]
 *
 * `--baseline=<commit>` runs the same measurements on another commit's gateway (lib/baseline.ts),
 * alternating with this tree's in rounds, and prints the medians of both and their ratio.
 * `--rate-limit=N` sets RATE_LIMIT_TASKS_PER_MINUTE (default: raised far above the load; 0 = off).
 *
 * The gateway logs at `warn` by default here (one line per request and per task at `info`; see --log-level).
 */
import { TokenSigner } from '../../src/auth/tokens';
import { nowMs } from '../lib/clock';
import { AUTH_SECRET, freshDatabase, postJson, processTree, startGateway, stopGateway } from '../lib/gateway';
import { deadline, fmt, log, opt, optList, printTable, type Row, writeResult } from '../lib/harness';
import { Hist } from '../lib/hist';
import { sampleProcs } from '../lib/proc';
import { prepareBaseline, REPO_ROOT } from '../lib/baseline';
import { loadavg } from 'node:os';

export interface TasksHttpRow {
  /** `current` (this tree) or the baseline's short hash. */
  variant: string;
  /** The round of alternating runs (1 without --baseline). */
  round: number;
  workers: number;
  syncCommit: boolean;
  requests: number;
  ok: number;
  errors: Record<string, number>;
  seconds: number;
  perSecond: number;
  p50: number;
  p99: number;
  max: number;
  gatewayCpuUsPerRequest: number;
  /** The machine's 1-minute load average when the run ended (other work on a shared machine). */
  loadavg1: number;
}

async function load(
  url: string,
  token: string,
  n: number,
  conc: number,
  hist: Hist | null,
): Promise<{ ok: number; errors: Record<string, number> }> {
  let next = 0;
  let ok = 0;
  const errors: Record<string, number> = {};
  const body = { input_data: { type: 'image', prompt: 'a lighthouse in a storm, oil on canvas' } };
  const worker = async (): Promise<void> => {
    while (next < n) {
      next++;
      const t0 = nowMs();
      try {
        const r = await postJson(`${url}/api/tasks`, token, body);
        hist?.record(nowMs() - t0);
        if (r.status === 202) ok++;
        else errors[String(r.status)] = (errors[String(r.status)] ?? 0) + 1;
      } catch (e) {
        const k = (e as Error).message.slice(0, 40);
        errors[k] = (errors[k] ?? 0) + 1;
      }
    }
  };
  await Promise.all(Array.from({ length: conc }, worker));
  return { ok, errors };
}

interface Variant {
  name: string;
  /** The tree the gateway runs from. */
  root: string;
}

/** One measured run: a fresh database, a gateway from `v.root`, a warm-up, then `n` requests. */
async function measure(
  v: Variant,
  round: number,
  workers: number,
  syncCommit: boolean,
  port: number,
  token: string,
): Promise<TasksHttpRow> {
  const n = opt('requests', 5000);
  const conc = opt('concurrency', 32);
  // --db: another database name, so that two runs on one PostgreSQL (other worktrees) do not drop each other's.
  const db = freshDatabase(opt('db', 'pyre_bench_http'), syncCommit);
  const env: Record<string, string> = {
    DATABASE_URL: db,
    WORKERS: String(workers),
    LOG_LEVEL: opt('log-level', 'warn'),
  };
  const limit = opt('rate-limit', -1);
  if (limit >= 0) env.RATE_LIMIT_TASKS_PER_MINUTE = String(limit);
  const gw = await startGateway(port, env, { cpuProf: opt('cpu-prof', false), root: v.root });
  try {
    await load(gw.url, token, Math.min(500, n), conc, null); // warm-up: JIT, pools, prepared plans
    const tree = processTree(gw.pid);
    const s0 = sampleProcs(tree);
    const hist = new Hist();
    const t0 = nowMs();
    const r = await load(gw.url, token, n, conc, hist);
    const secs = (nowMs() - t0) / 1000;
    const s1 = sampleProcs(tree);
    const row: TasksHttpRow = {
      variant: v.name,
      round,
      workers,
      syncCommit,
      requests: n,
      ok: r.ok,
      errors: r.errors,
      seconds: secs,
      perSecond: n / secs,
      p50: hist.percentile(50),
      p99: hist.percentile(99),
      max: hist.max,
      gatewayCpuUsPerRequest: ((s1.cpuSec - s0.cpuSec) * 1e6) / n,
      loadavg1: loadavg()[0]!,
    };
    log(
      `POST /api/tasks [${v.name}${round ? ` round ${round}` : ''}], ${workers} worker(s), ` +
        `synchronous_commit ${syncCommit ? 'on' : 'off'}: ${fmt(row.perSecond, 0)}/s, p99 ${fmt(row.p99, 2)} ms, ` +
        `${fmt(row.gatewayCpuUsPerRequest, 0)} µs CPU/req, ${r.ok} ok, errors ${JSON.stringify(r.errors)}, ` +
        `load ${fmt(row.loadavg1, 2)}`,
    );
    return row;
  } finally {
    await stopGateway(gw);
  }
}

/**
 * The scenario. With `--baseline=<commit>`, each setting runs `--rounds` times (default 3) for
 * the baseline and for this tree, alternating (B C, C B, B C, ...: a drift in the machine's load
 * falls on both), and the summary gives medians and the ratio current / baseline.
 */
export async function runTasksHttp(): Promise<TasksHttpRow[]> {
  const workersList = optList('workers', ['1', '2']).map(Number);
  const syncList = optList('sync-commit', ['on', 'off']).map((sc) => sc === 'on');
  const baselineCommit = opt('baseline', '');
  const baseline = baselineCommit ? prepareBaseline(baselineCommit) : undefined;
  const rounds = opt('rounds', baseline ? 3 : 1);
  const current: Variant = { name: 'current', root: REPO_ROOT };
  const variants: Variant[] = baseline ? [{ name: baseline.short, root: baseline.root }, current] : [current];
  const bound = deadline(opt('max-seconds', baseline ? 1800 : 600) * 1000, 'tasks-http');
  const token = new TokenSigner(AUTH_SECRET).mint('bench-user', 3600);
  const rows: TasksHttpRow[] = [];
  let port = opt('port', 4500);
  try {
    for (const workers of workersList) {
      for (const syncCommit of syncList) {
        for (let round = 1; round <= rounds; round++) {
          const order = round % 2 === 1 ? variants : [...variants].reverse();
          for (const v of order) {
            rows.push(await measure(v, baseline ? round : 0, workers, syncCommit, port++, token));
          }
        }
      }
    }
  } finally {
    clearTimeout(bound);
  }
  report(rows, baseline ? { name: baseline.short, sha: baseline.sha } : undefined);
  return rows;
}

const median = (xs: number[]): number => {
  const s = [...xs].sort((a, b) => a - b);
  const m = s.length >> 1;
  return s.length % 2 ? s[m]! : (s[m - 1]! + s[m]!) / 2;
};

export function report(rows: TasksHttpRow[], baseline?: { name: string; sha: string }): string {
  const table: Row[] = rows.map((r) => ({
    ...(baseline ? { commit: r.variant, round: r.round } : {}),
    'gateway processes': r.workers,
    synchronous_commit: r.syncCommit ? 'on' : 'off (not durable)',
    requests: r.requests,
    accepted: r.ok,
    errors: Object.keys(r.errors).length ? JSON.stringify(r.errors) : '0',
    'req/s': fmt(r.perSecond, 0),
    'p50 ms': fmt(r.p50, 2),
    'p99 ms': fmt(r.p99, 2),
    'gateway CPU µs/req': fmt(r.gatewayCpuUsPerRequest, 0),
    ...(baseline ? { load: fmt(r.loadavg1, 2) } : {}),
  }));
  let out = printTable('(e) POST /api/tasks on PostgreSQL (runner off)', table);
  const summary: Row[] = [];
  if (baseline) {
    const settings = [...new Set(rows.map((r) => `${r.workers}|${r.syncCommit}`))];
    for (const s of settings) {
      const of = (variant: string) => rows.filter((r) => `${r.workers}|${r.syncCommit}` === s && r.variant === variant);
      const b = of(baseline.name);
      const c = of('current');
      const m = (xs: TasksHttpRow[], f: (r: TasksHttpRow) => number) => median(xs.map(f));
      const [workers, sync] = s.split('|');
      summary.push({
        'gateway processes': workers,
        synchronous_commit: sync === 'true' ? 'on' : 'off (not durable)',
        rounds: Math.min(b.length, c.length),
        [`req/s ${baseline.name}`]: fmt(
          m(b, (r) => r.perSecond),
          0,
        ),
        'req/s current': fmt(
          m(c, (r) => r.perSecond),
          0,
        ),
        'req/s ratio': fmt(m(c, (r) => r.perSecond) / m(b, (r) => r.perSecond), 2),
        [`p99 ms ${baseline.name}`]: fmt(
          m(b, (r) => r.p99),
          1,
        ),
        'p99 ms current': fmt(
          m(c, (r) => r.p99),
          1,
        ),
        [`CPU µs/req ${baseline.name}`]: fmt(
          m(b, (r) => r.gatewayCpuUsPerRequest),
          0,
        ),
        'CPU µs/req current': fmt(
          m(c, (r) => r.gatewayCpuUsPerRequest),
          0,
        ),
        'CPU ratio': fmt(m(c, (r) => r.gatewayCpuUsPerRequest) / m(b, (r) => r.gatewayCpuUsPerRequest), 2),
        'load (median)': fmt(median([...b, ...c].map((r) => r.loadavg1)), 2),
      });
    }
    out += printTable(
      `(e) current vs ${baseline.name}: medians over alternating rounds; ratio = current / ${baseline.name}`,
      summary,
    );
  }
  writeResult('tasks-http', { rows, ...(baseline ? { baseline, summary } : {}) });
  return out;
}

if (require.main === module) {
  runTasksHttp().then(
    () => process.exit(0),
    (e: unknown) => {
      console.error(e);
      process.exit(1);
    },
  );
}
