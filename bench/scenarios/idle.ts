/**
 * (a) Idle joined sockets with heartbeats (each socket joins one topic and heartbeats every 30 s,
 * spread evenly; Socket.IO's server pings every 25 s instead). One server process grows to 5k, 10k
 * and 19k sockets (the open-file limit is 20,000 per process); at each step: server RSS per socket
 * (after a full GC, minus the empty server's RSS) and idle server CPU. Then pyre alone with 60k
 * sockets over several processes.
 *
 *   npx tsx bench/scenarios/idle.ts [--servers=pyre,ws,sio] [--steps=5000,10000,19000] [--idle-seconds=10]
 *                                   [--cluster=60000] [--cluster-procs=4]
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
  log,
  opt,
  optList,
  printTable,
  sample,
  startGenerators,
  startServers,
  stopAll,
  writeResult,
} from '../lib/harness';
import { availableServers } from '../lib/servers';

export interface IdleRow {
  server: ServerKind;
  processes: number;
  sockets: number;
  joined: number;
  failed: number;
  connectSeconds: number;
  rssMiB: number;
  baseRssMiB: number;
  kibPerSocket: number;
  idleCpuPercent: number;
  idleCpuUsPerSocketSec: number;
}

async function idleStep(
  kind: ServerKind,
  servers: Proc[],
  gens: Proc[],
  target: number,
  have: number,
  baseKiB: number,
  idleSec: number,
): Promise<IdleRow> {
  const c = await connectSpread(gens, {
    proto: PROTO[kind],
    targets: servers.map((s) => ({ host: '127.0.0.1', port: s.port! })),
    total: target - have,
    base: have,
    topicPrefix: 'room:',
    topicCount: 1000,
    topicsPerConn: 1,
    concurrency: 100,
    heartbeatMs: 30_000,
    timeoutMs: 180_000,
  });
  log(`${kind}×${servers.length}: +${c.joined} joined (${c.failed} failed) in ${fmt(c.wallMs / 1000)} s`);
  await sleep(1000);
  await gcAll(servers);
  await sleep(500);
  const s0 = sample(servers);
  await sleep(idleSec * 1000);
  const s1 = sample(servers);
  await gcAll(servers);
  const rss = sample(servers).rssKiB;
  const idleCpu = (s1.cpuSec - s0.cpuSec) / idleSec;
  return {
    server: kind,
    processes: servers.length,
    sockets: target,
    joined: have + c.joined,
    failed: c.failed,
    connectSeconds: c.wallMs / 1000,
    rssMiB: rss / 1024,
    baseRssMiB: baseKiB / 1024,
    kibPerSocket: (rss - baseKiB) / target,
    idleCpuPercent: idleCpu * 100,
    idleCpuUsPerSocketSec: (idleCpu * 1e6) / target,
  };
}

async function grow(
  kind: ServerKind,
  procs: number,
  steps: number[],
  nGens: number,
  idleSec: number,
  port: number,
): Promise<IdleRow[]> {
  const rows: IdleRow[] = [];
  const servers = await startServers(kind, procs, port);
  const gens = await startGenerators(nGens);
  try {
    await sleep(500);
    await gcAll(servers);
    const base = sample(servers).rssKiB;
    let have = 0;
    for (const target of steps) {
      const r = await idleStep(kind, servers, gens, target, have, base, idleSec);
      rows.push(r);
      have = target;
      if (r.failed > 0) log(`${kind}: ${r.failed} sockets failed to join at ${target}`);
    }
  } finally {
    await stopAll(gens);
    await stopAll(servers);
  }
  return rows;
}

export async function runIdle(): Promise<IdleRow[]> {
  const kinds = optList('servers', availableServers()) as ServerKind[];
  const steps = optList('steps', ['5000', '10000', '19000']).map(Number);
  const idleSec = opt('idle-seconds', 10);
  const cluster = opt('cluster', 60_000);
  const clusterProcs = opt('cluster-procs', 4);
  const bound = deadline(opt('max-seconds', 900) * 1000, 'idle');
  const rows: IdleRow[] = [];
  let port = opt('port', 4200);
  try {
    for (const kind of kinds) {
      rows.push(...(await grow(kind, 1, steps, 2, idleSec, port)));
      port += 10;
      await sleep(1000);
    }
    if (cluster > 0 && kinds.includes('pyre')) {
      rows.push(...(await grow('pyre', clusterProcs, [cluster], clusterProcs, idleSec, port)));
    }
  } finally {
    clearTimeout(bound);
  }
  report(rows);
  return rows;
}

export function report(rows: IdleRow[]): string {
  const ws = (n: number): IdleRow | undefined =>
    rows.find((r) => r.server === 'ws' && r.sockets === n && r.processes === 1);
  const table: Row[] = rows.map((r) => ({
    server: r.server,
    procs: r.processes,
    sockets: r.sockets,
    joined: r.joined,
    'connect s': fmt(r.connectSeconds, 1),
    'server RSS MiB': fmt(r.rssMiB, 0),
    'KiB/socket': fmt(r.kibPerSocket, 1),
    '÷ bare ws': fmt(r.kibPerSocket / (ws(r.sockets)?.kibPerSocket ?? NaN), 2),
    'idle CPU %': fmt(r.idleCpuPercent, 2),
    'µs/socket/s': fmt(r.idleCpuUsPerSocketSec, 3),
  }));
  const out = printTable('(a) idle joined sockets, heartbeat every 30 s', table);
  writeResult('idle', { rows });
  return out;
}

if (require.main === module) {
  runIdle().then(
    () => process.exit(0),
    (e: unknown) => {
      console.error(e);
      process.exit(1);
    },
  );
}
