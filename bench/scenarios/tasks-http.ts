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
 *
 * The gateway logs at `warn` by default here (one line per request and per task at `info`; see --log-level).
 */
import { TokenSigner } from '../../src/auth/tokens';
import { nowMs } from '../lib/clock';
import { AUTH_SECRET, freshDatabase, postJson, processTree, startGateway, stopGateway } from '../lib/gateway';
import { deadline, fmt, log, opt, optList, printTable, type Row, writeResult } from '../lib/harness';
import { Hist } from '../lib/hist';
import { sampleProcs } from '../lib/proc';

export interface TasksHttpRow {
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

export async function runTasksHttp(): Promise<TasksHttpRow[]> {
  const n = opt('requests', 5000);
  const conc = opt('concurrency', 32);
  const workersList = optList('workers', ['1', '2']).map(Number);
  const bound = deadline(opt('max-seconds', 600) * 1000, 'tasks-http');
  const token = new TokenSigner(AUTH_SECRET).mint('bench-user', 3600);
  const rows: TasksHttpRow[] = [];
  let port = opt('port', 4500);
  try {
    for (const [workers, syncCommit] of workersList.flatMap((w) =>
      optList('sync-commit', ['on', 'off']).map((sc) => [w, sc === 'on'] as const),
    )) {
      const db = freshDatabase('pyre_bench_http', syncCommit);
      const gw = await startGateway(
        port++,
        { DATABASE_URL: db, WORKERS: String(workers), LOG_LEVEL: opt('log-level', 'warn') },
        opt('cpu-prof', false),
      );
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
        };
        log(
          `POST /api/tasks, ${workers} worker(s), synchronous_commit ${syncCommit ? 'on' : 'off'}: ` +
            `${fmt(row.perSecond, 0)}/s, p99 ${fmt(row.p99, 2)} ms, ${r.ok} ok, errors ${JSON.stringify(r.errors)}`,
        );
        rows.push(row);
      } finally {
        await stopGateway(gw);
      }
    }
  } finally {
    clearTimeout(bound);
  }
  report(rows);
  return rows;
}

export function report(rows: TasksHttpRow[]): string {
  const table: Row[] = rows.map((r) => ({
    'gateway processes': r.workers,
    synchronous_commit: r.syncCommit ? 'on' : 'off (not durable)',
    requests: r.requests,
    accepted: r.ok,
    errors: Object.keys(r.errors).length ? JSON.stringify(r.errors) : '0',
    'req/s': fmt(r.perSecond, 0),
    'p50 ms': fmt(r.p50, 2),
    'p99 ms': fmt(r.p99, 2),
    'gateway CPU µs/req': fmt(r.gatewayCpuUsPerRequest, 0),
  }));
  const out = printTable('(e) POST /api/tasks on PostgreSQL (runner off)', table);
  writeResult('tasks-http', { rows });
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
