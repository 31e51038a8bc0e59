/**
 * (j) The cluster bus, PostgreSQL LISTEN/NOTIFY against Redis Pub/Sub, in one run (issue 22).
 *
 * 1. Task-event refs across 2 and 4 processes: one publishes refs at a paced rate (as the relay
 *    of the process that runs the tasks does), the others hear them. Per engine, process count and
 *    rate: refs/s delivered to each listener, publish→receive p50/p99, CPU of the publisher and of
 *    each listener, and CPU of PostgreSQL (all its processes: the whole server) or of Redis (a
 *    redis-server of the bench's own).
 * 2. NOTIFY throughput against the number of listening connections: 4 connections NOTIFY as fast
 *    as they can for a few seconds while L other connections LISTEN on the channel.
 *
 *   npx tsx bench/scenarios/bus.ts [--seconds=5] [--rates=1000,5000,20000] [--listeners=0,1,4,16,64]
 *   BENCH_DATABASE_URL (default postgres://postgres@127.0.0.1:5432/test); redis-server must be installed.
 */
import { spawn } from 'node:child_process';
import { readdirSync, readFileSync } from 'node:fs';
import net from 'node:net';
import { join } from 'node:path';
import pg from 'pg';
import { BENCH_DIR, log, opt, optList, spawnTs, stopAll, type Proc } from '../lib/harness';
import { Hist, type HistData } from '../lib/hist';
import { sampleProcs } from '../lib/proc';

const PG_URL = process.env.BENCH_DATABASE_URL || 'postgres://postgres@127.0.0.1:5432/test';

/** CPU seconds of each process whose command is `comm` (every PostgreSQL backend, say), by pid. */
function cpuByPid(comm: string): Map<number, number> {
  const out = new Map<number, number>();
  for (const d of readdirSync('/proc')) {
    if (!/^\d+$/.test(d)) continue;
    try {
      if (readFileSync(`/proc/${d}/comm`, 'utf8').trim() === comm) out.set(Number(d), sampleProcs([Number(d)]).cpuSec);
    } catch {
      /* gone */
    }
  }
  return out;
}

/** CPU seconds `comm`'s processes used between two samples (a process that exited meanwhile is not counted). */
function cpuSince(comm: string, before: Map<number, number>): number {
  let sum = 0;
  for (const [pid, sec] of cpuByPid(comm)) if (Number.isFinite(sec)) sum += sec - (before.get(pid) ?? 0);
  return sum;
}

async function freePort(): Promise<number> {
  const s = net.createServer();
  await new Promise<void>((r) => s.listen(0, '127.0.0.1', r));
  const port = (s.address() as net.AddressInfo).port;
  await new Promise((r) => s.close(r));
  return port;
}

async function ownRedis(): Promise<{ url: string; pid: number; stop(): void }> {
  const port = await freePort();
  const child = spawn(
    'redis-server',
    ['--port', String(port), '--bind', '127.0.0.1', '--save', '', '--appendonly', 'no'],
    {
      stdio: 'ignore',
    },
  );
  for (let i = 0; i < 100; i++) {
    const ok = await new Promise<boolean>((r) => {
      const s = net.connect(port, '127.0.0.1');
      s.once('connect', () => (s.end(), r(true)));
      s.once('error', () => r(false));
    });
    if (ok) break;
    await new Promise((r) => setTimeout(r, 50));
  }
  return { url: `redis://127.0.0.1:${port}`, pid: child.pid!, stop: () => child.kill('SIGTERM') };
}

interface Row {
  engine: string;
  processes: number;
  rate: number;
  perListener: number;
  p50: number;
  p99: number;
  pubCpu: number;
  listenerCpu: number;
  brokerCpu: number;
}

const cpuMs = (a: NodeJS.CpuUsage, b: NodeJS.CpuUsage) => (b.user - a.user + b.system - a.system) / 1000;

async function busRuns(redis: { url: string; pid: number }, seconds: number, rates: number[]): Promise<Row[]> {
  const rows: Row[] = [];
  for (const engine of ['postgres', 'redis'] as const) {
    for (const processes of [2, 4]) {
      const channel = `pyre_bench_bus_${process.pid}_${processes}`;
      const env = {
        BENCH_BUS_ENGINE: engine,
        BENCH_BUS_URL: engine === 'redis' ? redis.url : PG_URL,
        BENCH_BUS_CHANNEL: channel,
      };
      const nodes: Proc[] = [];
      try {
        for (let i = 0; i < processes; i++)
          nodes.push(await spawnTs(join(BENCH_DIR, 'lib', 'bus-node.ts'), `${engine}-node${i}`, env));
        const [pub, ...listeners] = nodes as [Proc, ...Proc[]];
        for (const rate of rates) {
          const before = await Promise.all(nodes.map((n) => n.rpc.call<{ cpu: NodeJS.CpuUsage }>('reset')));
          const broker0 = cpuByPid(engine === 'redis' ? 'redis-server' : 'postgres');
          const sent = await pub.rpc.call<{ sent: number; ms: number }>(
            'publish',
            { rate, seconds },
            (seconds + 60) * 1000,
          );
          // Let the tail arrive (a listener that keeps up has it within a second).
          await new Promise((r) => setTimeout(r, 1000));
          const after = await Promise.all(
            nodes.map((n) => n.rpc.call<{ received: number; hist: HistData; cpu: NodeJS.CpuUsage }>('report')),
          );
          const brokerSec = cpuSince(engine === 'redis' ? 'redis-server' : 'postgres', broker0);
          const heard = after.slice(1);
          const hist = Hist.from(heard.map((h) => h.hist));
          const windowS = sent.ms / 1000;
          rows.push({
            engine,
            processes,
            rate,
            perListener: Math.round(heard.reduce((s, h) => s + h.received, 0) / listeners.length / windowS),
            p50: hist.percentile(50),
            p99: hist.percentile(99),
            pubCpu: cpuMs(before[0]!.cpu, after[0]!.cpu) / 10 / windowS,
            listenerCpu:
              heard.reduce((s, h, i) => s + cpuMs(before[i + 1]!.cpu, h.cpu), 0) / listeners.length / 10 / windowS,
            brokerCpu: (brokerSec * 100) / windowS,
          });
          const r = rows[rows.length - 1]!;
          log(`(j) ${engine} ${processes} processes ${rate}/s: ${JSON.stringify(r)} (sent ${sent.sent})`);
        }
      } finally {
        await Promise.all(nodes.map((n) => n.rpc.call('close').catch(() => undefined)));
        await stopAll(nodes);
      }
    }
  }
  return rows;
}

/** NOTIFYs/s from 4 connections while `listeners` other connections LISTEN on the channel. */
async function notifyRate(
  listeners: number,
  seconds: number,
): Promise<{ listeners: number; perSecond: number; pgCpu: number }> {
  const channel = `pyre_bench_notify_${process.pid}`;
  const ears: pg.Client[] = [];
  const senders: pg.Client[] = [];
  try {
    for (let i = 0; i < listeners; i++) {
      const c = new pg.Client({ connectionString: PG_URL });
      await c.connect();
      c.on('notification', () => undefined);
      await c.query(`LISTEN ${channel}`);
      ears.push(c);
    }
    for (let i = 0; i < 4; i++) {
      const c = new pg.Client({ connectionString: PG_URL });
      await c.connect();
      senders.push(c);
    }
    const payload = JSON.stringify({ n: 'bench', m: [['events', null, ['task', 'user', 1, 1]]] });
    const cpu0 = cpuByPid('postgres');
    const end = Date.now() + seconds * 1000;
    const counts = await Promise.all(
      senders.map(async (c) => {
        let n = 0;
        while (Date.now() < end) {
          await c.query('SELECT pg_notify($1, $2)', [channel, payload]);
          n++;
        }
        return n;
      }),
    );
    const pgSec = cpuSince('postgres', cpu0);
    return {
      listeners,
      perSecond: Math.round(counts.reduce((a, b) => a + b, 0) / seconds),
      pgCpu: (pgSec * 100) / seconds,
    };
  } finally {
    await Promise.all([...ears, ...senders].map((c) => c.end().catch(() => undefined)));
  }
}

export async function runBus(): Promise<string> {
  const seconds = opt('seconds', 5);
  const rates = optList('rates', ['1000', '5000', '20000']).map(Number);
  const listenerCounts = optList('listeners', ['0', '1', '4', '16', '64']).map(Number);
  const redis = await ownRedis();
  try {
    const rows = await busRuns(redis, seconds, rates);
    const notify: Array<{ listeners: number; perSecond: number; pgCpu: number }> = [];
    for (const l of listenerCounts) notify.push(await notifyRate(l, seconds));
    const f = (n: number, d = 1) => (Number.isFinite(n) ? n.toFixed(d) : '–');
    const table = [
      '### (j) task-event refs across processes: PostgreSQL NOTIFY vs Redis Pub/Sub',
      '',
      '| engine | processes | offered refs/s | delivered refs/s per listener | p50 ms | p99 ms | publisher CPU % | listener CPU % (mean) | broker CPU % |',
      '| --- | --: | --: | --: | --: | --: | --: | --: | --: |',
      ...rows.map(
        (r) =>
          `| ${r.engine} | ${r.processes} | ${r.rate} | ${r.perListener} | ${f(r.p50, 2)} | ${f(r.p99, 2)} | ${f(r.pubCpu)} | ${f(r.listenerCpu)} | ${f(r.brokerCpu)} |`,
      ),
      '',
      'broker CPU: PostgreSQL = every `postgres` process of the server (whatever else it serves at the time counts too); Redis = every redis-server on the machine (the bench starts its own; a shared one idles).',
      '',
      '### (j) NOTIFY throughput against listening connections (4 connections NOTIFY in a loop)',
      '',
      '| listening connections | NOTIFY/s | PostgreSQL CPU % |',
      '| --: | --: | --: |',
      ...notify.map((n) => `| ${n.listeners} | ${n.perSecond} | ${f(n.pgCpu)} |`),
    ].join('\n');
    process.stdout.write(`${table}\n`);
    return table;
  } finally {
    redis.stop();
  }
}

if (require.main === module) {
  runBus().then(
    () => process.exit(0),
    (err) => {
      process.stderr.write(`${err instanceof Error ? err.stack : String(err)}\n`);
      process.exit(1);
    },
  );
}
