/**
 * (f) A task status change reaching a subscriber on another process: two gateway processes
 * (src/main.ts, separate ports, one PostgreSQL database; events cross by LISTEN/NOTIFY as between
 * machines), task runner off. K tasks are created on process A over REST; one Phoenix v2 socket
 * per task joins `task:<id>` on process B; then each task is cancelled on A (POST
 * /api/tasks/:id/cancel) at a steady rate. Latency = from sending the cancel request on A to the
 * `canceled` status frame arriving from B (one monotonic clock). Reported: p50/p99/max, lost.
 *
 *   npx tsx bench/scenarios/task-status.ts [--tasks=300] [--rate=50] [--sync-commit=on]
 */
import { TokenSigner } from '../../src/auth/tokens';
import { nowMs, sleep } from '../lib/clock';
import { AUTH_SECRET, freshDatabase, postJson, startGateway, stopGateway } from '../lib/gateway';
import {
  connectSpread,
  deadline,
  fmt,
  log,
  opt,
  printTable,
  type Row,
  startGenerators,
  stopAll,
  writeResult,
} from '../lib/harness';
import { Hist } from '../lib/hist';

export interface TaskStatusRow {
  syncCommit: boolean;
  tasks: number;
  rate: number;
  subscribed: number;
  received: number;
  p50: number;
  p99: number;
  max: number;
  cancelHttpP99: number;
}

export async function runTaskStatus(): Promise<TaskStatusRow[]> {
  const k = opt('tasks', 300);
  const rate = opt('rate', 50);
  const bound = deadline(opt('max-seconds', 300) * 1000, 'task-status');
  const token = new TokenSigner(AUTH_SECRET).mint('bench-user', 3600);
  const port = opt('port', 4600);
  const db = freshDatabase('pyre_bench_status', opt('sync-commit', 'on') === 'on');
  const a = await startGateway(port, { DATABASE_URL: db });
  const b = await startGateway(port + 1, { DATABASE_URL: db });
  const gens = await startGenerators(1);
  let row: TaskStatusRow;
  try {
    const ids: string[] = [];
    for (let i = 0; i < k; i++) {
      const r = await postJson(`${a.url}/api/tasks`, token, { input_data: { type: 'text', prompt: `bench ${i}` } });
      if (r.status !== 202) throw new Error(`POST /api/tasks → ${r.status} ${JSON.stringify(r.json)}`);
      ids.push((r.json as { task_id: string }).task_id);
    }
    const topics = ids.map((id) => `task:${id}`);
    const c = await connectSpread(gens, {
      proto: 'phoenix',
      targets: [{ host: '127.0.0.1', port: b.port }],
      total: k,
      topicPrefix: 'task:',
      topicCount: k,
      topicsPerConn: 1,
      topics,
      watch: '"canceled"',
      concurrency: 50,
      heartbeatMs: 30_000,
      timeoutMs: 60_000,
      token,
    });
    log(`task-status: ${c.joined}/${k} subscribers joined on process B`);
    await sleep(500);
    const sent = new Map<string, number>();
    const httpHist = new Hist();
    const t0 = nowMs();
    const inflight: Promise<void>[] = [];
    for (let i = 0; i < k; i++) {
      const due = t0 + (i * 1000) / rate;
      const wait = due - nowMs();
      if (wait > 0) await sleep(wait);
      const id = ids[i]!;
      const s = nowMs();
      sent.set(`task:${id}`, s);
      inflight.push(
        postJson(`${a.url}/api/tasks/${id}/cancel`, token, {}).then((r) => {
          httpHist.record(nowMs() - s);
          if (r.status !== 200) log(`cancel ${id} → ${r.status}`);
        }),
      );
    }
    await Promise.all(inflight);
    const end = nowMs() + 5000;
    let seen: Record<string, number> = {};
    while (nowMs() < end) {
      seen = await gens[0]!.rpc.call<Record<string, number>>('watched');
      if (Object.keys(seen).length >= c.joined) break;
      await sleep(100);
    }
    const hist = new Hist();
    for (const [topic, at] of Object.entries(seen)) {
      const s = sent.get(topic);
      if (s !== undefined) hist.record(at - s);
    }
    row = {
      syncCommit: opt('sync-commit', 'on') === 'on',
      tasks: k,
      rate,
      subscribed: c.joined,
      received: hist.n,
      p50: hist.percentile(50),
      p99: hist.percentile(99),
      max: hist.max,
      cancelHttpP99: httpHist.percentile(99),
    };
  } finally {
    await stopAll(gens);
    await stopGateway(a);
    await stopGateway(b);
    clearTimeout(bound);
  }
  report([row]);
  return [row];
}

export function report(rows: TaskStatusRow[]): string {
  const table: Row[] = rows.map((r) => ({
    tasks: r.tasks,
    synchronous_commit: r.syncCommit ? 'on' : 'off',
    'cancels/s': r.rate,
    'subscribers (process B)': r.subscribed,
    received: r.received,
    'p50 ms': fmt(r.p50, 1),
    'p99 ms': fmt(r.p99, 1),
    'max ms': fmt(r.max, 1),
    'cancel HTTP p99 ms': fmt(r.cancelHttpP99, 1),
  }));
  const out = printTable('(f) task status change (cancel on process A) → subscriber on process B', table);
  writeResult('task-status', { rows });
  return out;
}

if (require.main === module) {
  runTaskStatus().then(
    () => process.exit(0),
    (e: unknown) => {
      console.error(e);
      process.exit(1);
    },
  );
}
