/**
 * (b) Fan-out, 100-byte payloads, against pyre, bare ws and Socket.IO in one run:
 *   - "1×10k":      one topic, 10,000 subscribers, 50 broadcasts as fast as the server takes them,
 *                   either one broadcast per event-loop turn or ten per turn (a busy server gets
 *                   several publishes per I/O round; this is where per-tick write coalescing pays);
 *   - "1000×100":   1,000 topics × 100 subscribers (10,000 sockets joined to 10 topics each),
 *                   2,000 broadcasts over the topics in a scattered order, 1 or 10 per turn;
 *   - "1000×100 paced": the same sockets, 100 broadcasts/s (10k deliveries/s) and 300/s (30k/s) for
 *                   5 s each: the latency cases (an open loop: when the machine cannot keep up,
 *                   queueing shows in p99).
 * Reports delivered msg/s, publish-to-receive p50/p99, and server CPU µs per delivered message
 * (from /proc, server processes only), with the generators' CPU beside it.
 *
 *   npx tsx bench/scenarios/fanout.ts [--servers=pyre,ws,sio] [--subs=10000] [--gens=2] [--cpu-prof]
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
  startServer,
  stopAll,
  waitReceived,
  writeResult,
} from '../lib/harness';
import type { PublishResult } from '../lib/server-control';
import { availableServers } from '../lib/servers';

interface Phase {
  shape: string;
  broadcasts: number;
  rate: number;
  batch: number;
}

export interface FanoutRow {
  server: ServerKind;
  shape: string;
  subscribers: number;
  delivered: number;
  expected: number;
  msgPerSec: number;
  p50: number;
  p99: number;
  max: number;
  serverCpuUsPerMsg: number;
  /** Kernel share of the server's CPU (syscalls, and on loopback the receiving TCP stack too). */
  serverSysShare: number;
  genCpuUsPerMsg: number;
  serverPeakRssMiB: number;
}

async function measure(
  server: Proc,
  gens: Proc[],
  subsPerTopic: number,
  topicCount: number,
  ph: Phase,
): Promise<FanoutRow> {
  const expected = ph.broadcasts * subsPerTopic;
  await Promise.all(gens.map((g) => g.rpc.call('reset')));
  const s0 = sample([server]);
  const g0 = sample(gens);
  const pub = await server.rpc.call<PublishResult>(
    'publish',
    {
      prefix: 'room:',
      topicCount,
      count: ph.broadcasts,
      bytes: 100,
      rate: ph.rate,
      batch: ph.batch,
      stride: topicCount > 1 ? 919 : 1,
    },
    120_000,
  );
  await waitReceived(gens, expected, 60_000);
  await sleep(200); // let stragglers and the server's own bookkeeping land in the CPU window
  const s1 = sample([server]);
  const g1 = sample(gens);
  const st = await genStats(gens);
  const span = (st.lastRecv - pub.startMs) / 1000;
  return {
    server: server.name.split('#')[0] as ServerKind,
    shape: ph.shape,
    subscribers: subsPerTopic * topicCount,
    delivered: st.received,
    expected,
    msgPerSec: st.received / span,
    p50: st.hist.percentile(50),
    p99: st.hist.percentile(99),
    max: st.hist.max,
    serverCpuUsPerMsg: ((s1.cpuSec - s0.cpuSec) * 1e6) / Math.max(1, st.received),
    serverSysShare: (s1.sysSec - s0.sysSec) / Math.max(1e-9, s1.cpuSec - s0.cpuSec),
    genCpuUsPerMsg: ((g1.cpuSec - g0.cpuSec) * 1e6) / Math.max(1, st.received),
    serverPeakRssMiB: s1.hwmKiB / 1024,
  };
}

export async function runFanout(): Promise<FanoutRow[]> {
  const kinds = optList('servers', availableServers()) as ServerKind[];
  const subs = opt('subs', 10_000);
  const nGens = opt('gens', 2);
  const cpuProf = opt('cpu-prof', false);
  const bound = deadline(opt('max-seconds', 600) * 1000, 'fanout');
  const gens = await startGenerators(nGens);
  const rows: FanoutRow[] = [];
  let port = opt('port', 4100);
  try {
    for (const kind of kinds) {
      for (const shape of optList('shapes', ['1x10k', '1000x100']) as ('1x10k' | '1000x100')[]) {
        const topicCount = shape === '1x10k' ? 1 : 1000;
        const perConn = shape === '1x10k' ? 1 : 10;
        const subsPerTopic = (subs * perConn) / topicCount;
        const server = await startServer(kind, { port: port++, cpuProf }, `${kind}#0`);
        try {
          log(`${kind} ${shape}: connecting ${subs} sockets × ${perConn} topics`);
          const c = await connectSpread(gens, {
            proto: PROTO[kind],
            targets: [{ host: '127.0.0.1', port: server.port! }],
            total: subs,
            topicPrefix: 'room:',
            topicCount,
            topicsPerConn: perConn,
            concurrency: 100,
            heartbeatMs: 30_000,
            timeoutMs: 120_000,
          });
          log(`${kind} ${shape}: joined ${c.joined}, failed ${c.failed} in ${fmt(c.wallMs / 1000)} s`);
          await gcAll([server]);
          // warm-up: JIT and buffers
          const warm = Math.min(topicCount, 20);
          await Promise.all(gens.map((g) => g.rpc.call('reset')));
          await server.rpc.call('publish', {
            prefix: 'room:',
            topicCount,
            count: warm,
            bytes: 100,
            rate: 0,
            stride: topicCount > 1 ? 919 : 1,
          });
          await waitReceived(gens, warm * subsPerTopic, 30_000); // so no warm-up frame lands in a measured window
          await sleep(300);
          const phases: Phase[] =
            shape === '1x10k'
              ? [
                  { shape: '1×10k, 1 bcast/tick', broadcasts: opt('broadcasts', 50), rate: 0, batch: 1 },
                  { shape: '1×10k, 10 bcast/tick', broadcasts: opt('broadcasts', 50), rate: 0, batch: 10 },
                ]
              : [
                  { shape: '1000×100, 1 bcast/tick', broadcasts: 2000, rate: 0, batch: 1 },
                  { shape: '1000×100, 10 bcast/tick', broadcasts: 2000, rate: 0, batch: 10 },
                  { shape: '1000×100, paced 100/s', broadcasts: 500, rate: 100, batch: 1 },
                  { shape: '1000×100, paced 300/s', broadcasts: 1500, rate: 300, batch: 1 },
                ];
          for (const ph of phases) {
            const r = await measure(server, gens, subsPerTopic, topicCount, ph);
            log(
              `${kind} ${ph.shape}: ${r.delivered}/${r.expected} delivered, ${fmt(r.msgPerSec)} msg/s, ` +
                `p99 ${fmt(r.p99)} ms, ${fmt(r.serverCpuUsPerMsg, 2)} µs/msg`,
            );
            rows.push(r);
            await sleep(300);
          }
        } finally {
          await Promise.all(gens.map((g) => g.rpc.call('closeAll')));
          await stopAll([server]);
          await sleep(500);
        }
      }
    }
  } finally {
    await stopAll(gens);
    clearTimeout(bound);
  }
  report(rows);
  return rows;
}

export function report(rows: FanoutRow[]): string {
  const sio = (shape: string): FanoutRow | undefined => rows.find((r) => r.server === 'sio' && r.shape === shape);
  const ws = (shape: string): FanoutRow | undefined => rows.find((r) => r.server === 'ws' && r.shape === shape);
  const table: Row[] = rows.map((r) => ({
    server: r.server,
    shape: r.shape,
    delivered: `${r.delivered}/${r.expected}`,
    'msg/s': fmt(r.msgPerSec, 0),
    'p50 ms': fmt(r.p50, 2),
    'p99 ms': fmt(r.p99, 2),
    'server CPU µs/msg': fmt(r.serverCpuUsPerMsg, 2),
    'server sys %': fmt(r.serverSysShare * 100, 0),
    '÷ Socket.IO': fmt(r.serverCpuUsPerMsg / (sio(r.shape)?.serverCpuUsPerMsg ?? NaN), 2),
    '÷ bare ws': fmt(r.serverCpuUsPerMsg / (ws(r.shape)?.serverCpuUsPerMsg ?? NaN), 2),
    'gen CPU µs/msg': fmt(r.genCpuUsPerMsg, 2),
    'server peak RSS MiB': fmt(r.serverPeakRssMiB, 0),
  }));
  const out = printTable('(b) fan-out, 100-byte payloads', table);
  writeResult('fanout', { rows });
  return out;
}

if (require.main === module) {
  runFanout().then(
    () => process.exit(0),
    (e: unknown) => {
      console.error(e);
      process.exit(1);
    },
  );
}
