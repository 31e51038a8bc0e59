/**
 * (g) Reconnect storm: 20k joined sockets (two server processes of 10k: the open-file limit is
 * 20,000 per process) are dropped at once by the clients, which reconnect and rejoin with
 * phoenix.js's backoff schedule (10, 50, 100, 150, 200, 250, 500, 1000, 2000, then 5000 ms), each
 * delay jittered ×0.5–1.5. Reported: time until every socket is back and joined (target 30 s),
 * connect attempts, and server RSS after the storm against before it (target within 10%), each
 * sampled after the same quiet time (--settle-seconds) and a GC.
 *
 *   npx tsx bench/scenarios/storm.ts [--servers=pyre,ws,sio] [--sockets=20000] [--procs=2] [--settle-seconds=30]
 */
import { sleep } from '../lib/clock';
import {
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
  writeResult,
} from '../lib/harness';
import { availableServers } from '../lib/servers';

export interface StormRow {
  server: ServerKind;
  processes: number;
  sockets: number;
  joinedBefore: number;
  back: number;
  seconds: number;
  attempts: number;
  failures: number;
  rssBeforeMiB: number;
  rssAfterMiB: number;
  rssChange: number;
  /** V8 heap in use (all server processes) before and after, to tell live objects from allocator slack. */
  heapBeforeMiB: number;
  heapAfterMiB: number;
  serverCpuSec: number;
}

const BACKOFF = [10, 50, 100, 150, 200, 250, 500, 1000, 2000, 5000];

export async function runStorm(): Promise<StormRow[]> {
  const kinds = optList('servers', availableServers()) as ServerKind[];
  const n = opt('sockets', 20_000);
  const procs = opt('procs', 2);
  const limitSec = opt('storm-seconds', 60);
  const bound = deadline(opt('max-seconds', 900) * 1000, 'storm');
  const rows: StormRow[] = [];
  let port = opt('port', 4700);
  try {
    for (const kind of kinds) {
      const servers = await startServers(kind, procs, port);
      port += 10;
      const gens = await startGenerators(procs);
      try {
        const c = await connectSpread(gens, {
          proto: PROTO[kind],
          targets: servers.map((s) => ({ host: '127.0.0.1', port: s.port! })),
          total: n,
          topicPrefix: 'room:',
          topicCount: 1000,
          topicsPerConn: 1,
          concurrency: 100,
          heartbeatMs: 30_000,
          timeoutMs: 180_000,
        });
        log(`${kind}×${procs}: ${c.joined}/${n} joined in ${fmt(c.wallMs / 1000)} s`);
        // Both samples after the same quiet time: V8's memory reducer gives back heap pages a few
        // seconds after allocation calms down, so a sample right after a burst shows slack, not use.
        const settleMs = opt('settle-seconds', 30) * 1000;
        await sleep(settleMs);
        await gcAll(servers);
        const before = sample(servers);
        // The servers' memory, summed (MiB), and logged in detail; heapUsed tells live objects from slack.
        const memory = async (when: string): Promise<Record<keyof NodeJS.MemoryUsage, number>> => {
          const ms = (await Promise.all(servers.map((s) => s.rpc.call<{ mem: NodeJS.MemoryUsage }>('info')))).map(
            (i) => i.mem,
          );
          const keys = ['rss', 'heapTotal', 'heapUsed', 'external', 'arrayBuffers'] as const;
          const sum = Object.fromEntries(keys.map((k) => [k, ms.reduce((a, m) => a + m[k], 0) / 2 ** 20])) as Record<
            keyof NodeJS.MemoryUsage,
            number
          >;
          log(`${kind} ${when} the storm: ${keys.map((k) => `${k} ${fmt(sum[k], 0)}`).join(', ')} MiB`);
          return sum;
        };
        const heapBefore = (await memory('before')).heapUsed;
        const rs = await Promise.all(
          gens.map((g) =>
            g.rpc.call<{ back: number; total: number; attempts: number; failures: number; ms: number }>(
              'storm',
              { timeoutMs: limitSec * 1000, backoffMs: BACKOFF },
              limitSec * 1000 + 30_000,
            ),
          ),
        );
        const secs = Math.max(...rs.map((r) => r.ms)) / 1000;
        await sleep(settleMs);
        await gcAll(servers);
        await sleep(500);
        const after = sample(servers);
        const heapAfter = (await memory('after')).heapUsed;
        const st = await genStats(gens);
        const row: StormRow = {
          server: kind,
          processes: procs,
          sockets: n,
          joinedBefore: c.joined,
          back: Math.min(
            st.joined,
            rs.reduce((s, r) => s + r.back, 0),
          ),
          seconds: secs,
          attempts: rs.reduce((s, r) => s + r.attempts, 0),
          failures: rs.reduce((s, r) => s + r.failures, 0),
          rssBeforeMiB: before.rssKiB / 1024,
          rssAfterMiB: after.rssKiB / 1024,
          rssChange: after.rssKiB / before.rssKiB - 1,
          heapBeforeMiB: heapBefore,
          heapAfterMiB: heapAfter,
          serverCpuSec: after.cpuSec - before.cpuSec,
        };
        log(
          `${kind}: ${row.back}/${n} back in ${fmt(secs, 1)} s, ${row.attempts} attempts; RSS ${fmt(row.rssBeforeMiB, 0)} → ${fmt(row.rssAfterMiB, 0)} MiB`,
        );
        rows.push(row);
      } finally {
        await stopAll(gens);
        await stopAll(servers);
      }
      await sleep(1000);
    }
  } finally {
    clearTimeout(bound);
  }
  report(rows);
  return rows;
}

export function report(rows: StormRow[]): string {
  const table: Row[] = rows.map((r) => ({
    server: r.server,
    procs: r.processes,
    'joined before': `${r.joinedBefore}/${r.sockets}`,
    'back & joined': r.back,
    'all back in s': r.back === r.sockets ? fmt(r.seconds, 1) : `not all (${fmt(r.seconds, 1)})`,
    attempts: r.attempts,
    'RSS before MiB': fmt(r.rssBeforeMiB, 0),
    'RSS after MiB': fmt(r.rssAfterMiB, 0),
    'RSS change': `${r.rssChange >= 0 ? '+' : ''}${fmt(r.rssChange * 100, 1)}%`,
    'JS heap MiB before → after': `${fmt(r.heapBeforeMiB, 0)} → ${fmt(r.heapAfterMiB, 0)}`,
    'server CPU s': fmt(r.serverCpuSec, 1),
  }));
  const out = printTable('(g) reconnect storm: all sockets dropped at once, jittered backoff', table);
  writeResult('storm', { rows });
  return out;
}

if (require.main === module) {
  runStorm().then(
    () => process.exit(0),
    (e: unknown) => {
      console.error(e);
      process.exit(1);
    },
  );
}
