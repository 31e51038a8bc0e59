/**
 * (c) One message to 100k subscribers of one topic, spread over several server processes (each
 * process may hold at most ~19k sockets). pyre publishes on process 0 and the broadcast crosses to
 * the others through its PubSubAdapter (relayed over IPC by the harness, standing in for a broker);
 * the references have no pubsub, so the harness triggers every process at once (a free, ideal
 * pubsub: this favours them). Reported: time from the publish call to the first and to the last
 * receipt (the last write happens no later than the last receipt), over a few single broadcasts.
 *
 *   npx tsx bench/scenarios/bigfanout.ts [--servers=pyre,ws,sio] [--subs=100000] [--procs=6] [--repeats=3]
 */
import { sleep } from '../lib/clock';
import {
  type Proc,
  PROTO,
  type Row,
  type ServerKind,
  connectSpread,
  deadline,
  fmt,
  gcAll,
  genStats,
  log,
  opt,
  optList,
  printTable,
  sample,
  startGenerators,
  startServers,
  stopAll,
  waitReceived,
  writeResult,
} from '../lib/harness';
import type { PublishResult } from '../lib/server-control';
import { availableServers } from '../lib/servers';

export interface BigRow {
  server: ServerKind;
  processes: number;
  subscribers: number;
  joined: number;
  connectSeconds: number;
  /** Per broadcast: ms from publish to first / last receipt, and deliveries. */
  firstMs: number[];
  lastMs: number[];
  delivered: number[];
  serverCpuUsPerMsg: number;
  serverRssMiB: number;
}

async function one(kind: ServerKind, subs: number, procs: number, repeats: number, port: number): Promise<BigRow> {
  const servers = await startServers(kind, procs, port);
  const gens = await startGenerators(procs);
  try {
    const c = await connectSpread(gens, {
      proto: PROTO[kind],
      targets: servers.map((s) => ({ host: '127.0.0.1', port: s.port! })),
      total: subs,
      topicPrefix: 'room:',
      topicCount: 1,
      topicsPerConn: 1,
      concurrency: 100,
      heartbeatMs: 30_000,
      timeoutMs: 240_000,
    });
    log(`${kind}×${procs}: ${c.joined} joined, ${c.failed} failed in ${fmt(c.wallMs / 1000)} s`);
    await gcAll(servers);
    await sleep(1000);
    const row: BigRow = {
      server: kind,
      processes: procs,
      subscribers: subs,
      joined: c.joined,
      connectSeconds: c.wallMs / 1000,
      firstMs: [],
      lastMs: [],
      delivered: [],
      serverCpuUsPerMsg: NaN,
      serverRssMiB: sample(servers).rssKiB / 1024,
    };
    let cpu = 0;
    let msgs = 0;
    for (let i = 0; i < repeats; i++) {
      await Promise.all(gens.map((g) => g.rpc.call('reset')));
      const s0 = sample(servers);
      const targets: Proc[] = kind === 'pyre' ? [servers[0]!] : servers;
      const pubs = await Promise.all(
        targets.map((s) => s.rpc.call<PublishResult>('publish', { topics: ['room:0'], count: 1, bytes: 100, rate: 0 })),
      );
      await waitReceived(gens, c.joined, 20_000);
      await sleep(100);
      const s1 = sample(servers);
      const st = await genStats(gens);
      const t0 = Math.min(...pubs.map((p) => p.startMs));
      row.firstMs.push(st.firstRecv - t0);
      row.lastMs.push(st.lastRecv - t0);
      row.delivered.push(st.received);
      cpu += s1.cpuSec - s0.cpuSec;
      msgs += st.received;
      log(
        `${kind}×${procs}: broadcast ${i + 1}: ${st.received}/${c.joined} in ${fmt(st.lastRecv - t0)} ms (first after ${fmt(st.firstRecv - t0, 2)} ms)`,
      );
      await sleep(1000);
    }
    row.serverCpuUsPerMsg = (cpu * 1e6) / Math.max(1, msgs);
    return row;
  } finally {
    await stopAll(gens);
    await stopAll(servers);
  }
}

export async function runBigFanout(): Promise<BigRow[]> {
  const kinds = optList('servers', availableServers()) as ServerKind[];
  const subs = opt('subs', 100_000);
  const procs = opt('procs', Math.ceil(subs / 17_000));
  const repeats = opt('repeats', 3);
  const bound = deadline(opt('max-seconds', 1500) * 1000, 'bigfanout');
  const rows: BigRow[] = [];
  let port = opt('port', 4300);
  try {
    for (const kind of kinds) {
      rows.push(await one(kind, subs, procs, repeats, port));
      port += 20;
      await sleep(2000);
    }
  } finally {
    clearTimeout(bound);
  }
  report(rows);
  return rows;
}

const median = (xs: number[]): number => {
  const s = [...xs].sort((a, b) => a - b);
  return s.length ? s[Math.floor(s.length / 2)]! : NaN;
};

export function report(rows: BigRow[]): string {
  const table: Row[] = rows.map((r) => ({
    server: r.server,
    procs: r.processes,
    subscribers: `${r.joined}/${r.subscribers}`,
    delivered: r.delivered.join(', '),
    'first ms (median)': fmt(median(r.firstMs), 1),
    'last ms (median)': fmt(median(r.lastMs), 0),
    'last ms (worst)': fmt(Math.max(...r.lastMs), 0),
    'server CPU µs/msg': fmt(r.serverCpuUsPerMsg, 2),
    'server RSS MiB': fmt(r.serverRssMiB, 0),
  }));
  const out = printTable('(c) one message to all subscribers of one topic, across processes', table);
  writeResult('bigfanout', { rows });
  return out;
}

if (require.main === module) {
  runBigFanout().then(
    () => process.exit(0),
    (e: unknown) => {
      console.error(e);
      process.exit(1);
    },
  );
}
