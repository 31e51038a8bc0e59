/**
 * (h) Predictions in flight (issue 15): one gateway process (src/main.ts, PostgreSQL) follows
 * thousands of video predictions on the Replicate stand-in (in this process, real time; every
 * video takes minutes), in polling mode and in webhook mode (PUBLIC_URL set: the stand-in posts
 * signed deliveries; polls are the safety net). The tasks come from 20 users (the per-user cap,
 * RUNNER_USER_CONCURRENCY, is 200 by default), submitted over REST.
 *
 * Reported per mode: the gateway's CPU % of one core and RSS over a steady window with every
 * prediction in flight; the provider requests a minute by kind over that window (from the
 * stand-in's request log) against the budgets; submit → create p50/p99; how late each task saw its
 * prediction's end against what its poll interval allows; and (polling mode) the fairness case:
 * with the process full and user A holding 500 queued, user B's one task starts in the first
 * claim that has room.
 *
 *   npx tsx bench/scenarios/inflight.ts [--tasks=2000] [--modes=polling,webhooks] [--processing-s=150]
 *     [--window-s=60] [--creates-per-minute=6000] [--reads-per-minute=3000]
 *
 * The create budget defaults to 6,000/min here (gateway and stand-in alike) so that 2,000 creates
 * fit well inside a prediction's run; at the product default (600/min) 2,000 creates take ≥ 3 min.
 */
import { loadavg } from 'node:os';
import { TokenSigner } from '../../src/auth/tokens';
import { openDatabase, type Db } from '../../src/db';
import { startStandin, type RecordedRequest, type Standin } from '../../src/providers/replicate/standin';
import { sleep } from '../lib/clock';
import { AUTH_SECRET, freshDatabase, postJson, startGateway, stopGateway, type GatewayProc } from '../lib/gateway';
import { deadline, fmt, log, opt, optList, printTable, type Row, writeResult } from '../lib/harness';
import { Hist } from '../lib/hist';
import { sampleProc } from '../lib/proc';

const VIDEO = 'bytedance/seedance-1-pro';
const USERS = 20;

export interface InflightRow {
  mode: 'polling' | 'webhooks';
  tasks: number;
  inFlight: number;
  cpuPct: number;
  rssMiB: number;
  windowS: number;
  perMinute: Record<string, number>;
  throttled: number;
  submitToCreateP50: number;
  submitToCreateP99: number;
  endLagP50: number;
  endLagP99: number;
  endLagMax: number;
  slowerThanPoll: number;
  succeeded: number;
  webhookDeliveries: number;
  loadavg: number[];
  fairness?: { aCreatedBeforeB: number; bSubmitToCreateMs: number; aQueuedWhenBStarted: number };
}

interface Ctx {
  standin: Standin;
  gw: GatewayProc;
  db: Db;
  tokens: (user: string) => string;
  submitted: Map<string, number>;
}

/** The requests of the stand-in's log in [from, to) (wall clock), by kind; files and streams aside. */
function byKind(log: RecordedRequest[], from: number, to: number): Record<string, number> {
  const out: Record<string, number> = {};
  for (const r of log) {
    if (r.wallAt < from || r.wallAt >= to || r.op === 'file' || r.op === 'stream') continue;
    out[r.op] = (out[r.op] ?? 0) + 1;
  }
  return out;
}

async function submit(ctx: Ctx, user: string, prompt: string): Promise<string> {
  ctx.submitted.set(prompt, Date.now());
  const r = await postJson(`${ctx.gw.url}/api/tasks`, ctx.tokens(user), { input_data: { type: 'video', prompt } });
  if (r.status !== 202) throw new Error(`POST /api/tasks → ${r.status} ${JSON.stringify(r.json)}`);
  return (r.json as { task_id: string }).task_id;
}

/** Submit `n` tasks over the users, 16 at a time; their ids. */
async function submitAll(ctx: Ctx, n: number): Promise<string[]> {
  let next = 0;
  const ids: string[] = [];
  await Promise.all(
    Array.from({ length: 16 }, async () => {
      while (next < n) {
        const i = next++;
        ids.push(await submit(ctx, `user-${i % USERS}`, `inflight #${i}`));
      }
    }),
  );
  return ids;
}

const createdCount = (s: Standin) => s.requests.filter((r) => r.op === 'create' && r.status === 201).length;

async function until(what: string, fn: () => Promise<boolean> | boolean, timeoutMs: number): Promise<void> {
  const end = Date.now() + timeoutMs;
  // A failed look (the shared database out of connections for a moment) is a look that says no.
  while (!(await Promise.resolve(fn()).catch(() => false))) {
    if (Date.now() > end) throw new Error(`timed out waiting for ${what}`);
    await sleep(500);
  }
}

/** CPU % of one core and RSS of the gateway over a window, sampling RSS every 5 s. */
async function steadyWindow(ctx: Ctx, windowS: number) {
  const from = Date.now();
  const c0 = sampleProc(ctx.gw.pid).cpuSec;
  let rss = 0;
  while (Date.now() - from < windowS * 1000) {
    await sleep(5000);
    rss = Math.max(rss, sampleProc(ctx.gw.pid).rssKiB);
  }
  const to = Date.now();
  const cpuPct = ((sampleProc(ctx.gw.pid).cpuSec - c0) / ((to - from) / 1000)) * 100;
  const counts = byKind(ctx.standin.requests, from, to);
  const perMinute = Object.fromEntries(Object.entries(counts).map(([k, v]) => [k, (v * 60_000) / (to - from)]));
  return { cpuPct, rssMiB: rss / 1024, perMinute };
}

/** Submit → create, from the stand-in's log (the prompt names the task). */
function submitToCreate(ctx: Ctx): Hist {
  const h = new Hist();
  for (const r of ctx.standin.requests) {
    if (r.op !== 'create' || r.status !== 201) continue;
    const prompt = (r.body as { input?: { prompt?: string } }).input?.prompt;
    const at = prompt ? ctx.submitted.get(prompt) : undefined;
    if (at !== undefined && prompt!.startsWith('inflight')) h.record(r.wallAt - at);
  }
  return h;
}

/**
 * How late each task saw its prediction's end: the task's completed_at against the stand-in's,
 * beside the poll interval its age allowed (a tenth of its age, 1–30 s; webhooks: at once).
 */
async function endLags(ctx: Ctx, ids: string[]) {
  const rows = (await ctx
    .db('tasks')
    .whereIn('id', ids)
    .select('prediction_id', 'completed_at', 'status', 'started_at')) as Array<{
    prediction_id: string | null;
    completed_at: Date | null;
    status: string;
    started_at: Date | null;
  }>;
  const h = new Hist();
  let slower = 0;
  let succeeded = 0;
  for (const r of rows) {
    if (r.status === 'succeeded') succeeded++;
    const v = r.prediction_id ? ctx.standin.prediction(r.prediction_id) : null;
    if (!v?.completed_at || !r.completed_at || !r.started_at) continue;
    const end = Date.parse(v.completed_at as string);
    const lag = new Date(r.completed_at).getTime() - end;
    h.record(Math.max(0, lag));
    const age = end - new Date(r.started_at).getTime();
    if (lag > Math.max(1000, Math.min(30_000, age / 10)) + 1000) slower++;
  }
  return { h, slower, succeeded };
}

/** With the process full, A queues 500 and B one: where B's create lands among A's. */
async function fairness(ctx: Ctx) {
  for (let i = 0; i < 500; i++) await submit(ctx, 'user-A', `fair A #${i}`);
  const bAt = Date.now();
  await submit(ctx, 'user-B', 'fair B');
  const prompts = () =>
    ctx.standin.requests
      .filter((r) => r.op === 'create' && r.status === 201)
      .map((r) => (r.body as { input: { prompt: string } }).input.prompt);
  await until('B to start', () => prompts().includes('fair B'), 15 * 60_000);
  const creates = ctx.standin.requests.filter((r) => r.op === 'create' && r.status === 201);
  const bReq = creates.find((r) => (r.body as { input: { prompt: string } }).input.prompt === 'fair B')!;
  const ps = prompts();
  const aBefore = ps.slice(0, ps.indexOf('fair B')).filter((p) => p.startsWith('fair A')).length;
  return { aCreatedBeforeB: aBefore, bSubmitToCreateMs: bReq.wallAt - bAt, aQueuedWhenBStarted: 500 - aBefore };
}

async function runMode(mode: 'polling' | 'webhooks', port: number): Promise<InflightRow> {
  const tasks = opt('tasks', 2000);
  const windowS = opt('window-s', 60);
  const cpm = opt('creates-per-minute', 6000);
  const rpm = opt('reads-per-minute', 3000);
  const standin = await startStandin({ clock: { speed: 1 }, preset: 'minutes' });
  standin.faults.rateLimits = { createPerMinute: cpm, otherPerMinute: rpm };
  standin.faults.timelines[VIDEO] = { queueMs: 10_000, processingMs: opt('processing-s', 150) * 1000 };
  const dbUrl = freshDatabase(`pyre_bench_inflight_${mode}`);
  const url = `http://127.0.0.1:${port}`;
  const gw = await startGateway(port, {
    DATABASE_URL: dbUrl,
    RUNNER_ENABLED: 'true',
    REPLICATE_API_TOKEN: standin.token,
    REPLICATE_BASE_URL: standin.url,
    PROVIDER_CREATES_PER_MINUTE: String(cpm),
    PROVIDER_READS_PER_MINUTE: String(rpm),
    RATE_LIMIT_TASKS_PER_MINUTE: '0',
    ...(mode === 'webhooks' ? { PUBLIC_URL: url, REPLICATE_WEBHOOK_SECRET: standin.webhookSecret } : {}),
  });
  const db = openDatabase({ databaseUrl: dbUrl, pool: { min: 0, max: 2 } });
  const signer = new TokenSigner(AUTH_SECRET);
  const ctx: Ctx = { standin, gw, db, tokens: (u) => signer.mint(u, 3600), submitted: new Map() };
  try {
    log(`inflight ${mode}: submitting ${tasks} video tasks from ${USERS} users`);
    const ids = await submitAll(ctx, tasks);
    await until(`${tasks} creates`, () => createdCount(standin) >= tasks, 10 * 60_000);
    log(`inflight ${mode}: all ${tasks} predictions created; settling 10 s, then a ${windowS} s window`);
    await sleep(10_000);
    const load = loadavg();
    const steady = await steadyWindow(ctx, windowS);
    const inFlight = [...standin.predictions.values()].filter(
      (p) => p.stateAt(standin.clock.now()).completedAt === null,
    ).length;
    const fair = mode === 'polling' ? await fairness(ctx) : undefined;
    log(`inflight ${mode}: waiting for the ${tasks} tasks to end`);
    await until(
      'every task to end',
      async () => {
        const [{ n }] = (await db('tasks')
          .whereIn('id', ids)
          .whereIn('status', ['queued', 'processing'])
          .count({ n: '*' })) as Array<{ n: string }>;
        return Number(n) === 0;
      },
      20 * 60_000,
    );
    const s2c = submitToCreate(ctx);
    const lags = await endLags(ctx, ids);
    return {
      mode,
      tasks,
      inFlight,
      ...steady,
      windowS,
      throttled: standin.requests.filter((r) => r.status === 429).length,
      submitToCreateP50: s2c.percentile(50),
      submitToCreateP99: s2c.percentile(99),
      endLagP50: lags.h.percentile(50),
      endLagP99: lags.h.percentile(99),
      endLagMax: lags.h.max,
      slowerThanPoll: lags.slower,
      succeeded: lags.succeeded,
      webhookDeliveries: standin.webhookDeliveries.length,
      loadavg: load,
      ...(fair ? { fairness: fair } : {}),
    };
  } finally {
    await stopGateway(gw);
    await db.destroy();
    await standin.close();
  }
}

export async function runInflight(): Promise<InflightRow[]> {
  const bound = deadline(opt('max-seconds', 1800) * 1000, 'inflight');
  const rows: InflightRow[] = [];
  try {
    for (const mode of optList('modes', ['polling', 'webhooks'])) {
      rows.push(await runMode(mode as 'polling' | 'webhooks', opt('port', 4700)));
      log(`inflight ${mode}: ${JSON.stringify(rows.at(-1))}`);
    }
  } finally {
    clearTimeout(bound);
  }
  report(rows);
  return rows;
}

export function report(rows: InflightRow[]): string {
  const cpm = opt('creates-per-minute', 6000);
  const rpm = opt('reads-per-minute', 3000);
  const table: Row[] = rows.map((r) => {
    const reads = Object.entries(r.perMinute)
      .filter(([k]) => k !== 'create')
      .reduce((s, [, v]) => s + v, 0);
    return {
      mode: r.mode,
      'in flight': r.inFlight,
      'gateway CPU % of a core': fmt(r.cpuPct, 1),
      'RSS MiB': fmt(r.rssMiB, 0),
      'creates/min (budget)': `${fmt(r.perMinute.create ?? 0, 0)} (${cpm})`,
      'reads/min (budget)': `${fmt(reads, 0)} (${rpm}): ${Object.entries(r.perMinute)
        .filter(([k]) => k !== 'create')
        .map(([k, v]) => `${k} ${fmt(v, 0)}`)
        .join(', ')}`,
      '429s': r.throttled,
      'submit→create p50/p99 s': `${fmt(r.submitToCreateP50 / 1000, 1)} / ${fmt(r.submitToCreateP99 / 1000, 1)}`,
      'end seen late p50/p99/max s': `${fmt(r.endLagP50 / 1000, 1)} / ${fmt(r.endLagP99 / 1000, 1)} / ${fmt(r.endLagMax / 1000, 1)}`,
      'later than its poll interval': r.slowerThanPoll,
      succeeded: `${r.succeeded}/${r.tasks}`,
      webhooks: r.webhookDeliveries,
      'load avg': r.loadavg.map((x) => x.toFixed(1)).join(' '),
    };
  });
  let out = printTable('(h) predictions in flight in one gateway process', table);
  const fair = rows.find((r) => r.fairness)?.fairness;
  if (fair)
    out += printTable('(h) fairness: process full, user A 500 queued, user B submits one', [
      {
        "A's creates before B's": fair.aCreatedBeforeB,
        "A's still queued when B started": fair.aQueuedWhenBStarted,
        'B submit→create s': fmt(fair.bSubmitToCreateMs / 1000, 1),
      },
    ]);
  writeResult('inflight', { rows });
  return out;
}

if (require.main === module) {
  runInflight().then(
    () => process.exit(0),
    (e: unknown) => {
      console.error(e);
      process.exit(1);
    },
  );
}
