/**
 * (d) Connect-and-join rate with token verification: every server checks the same pyre token
 * (HMAC-SHA256, src/auth/tokens.ts) from the `token` query parameter at the upgrade, then the
 * socket joins one topic. 10,000 sockets from 2 generator processes, 100 in flight each.
 * Reported: joined sockets per second (wall clock, first connect to last join reply) and the
 * server's CPU per connect+join.
 *
 *   npx tsx bench/scenarios/connect.ts [--servers=pyre,ws,sio] [--sockets=10000] [--gens=2] [--inflight=100]
 */
import { TokenSigner } from '../../src/auth/tokens';
import { sleep } from '../lib/clock';
import {
  PROTO,
  type Row,
  type ServerKind,
  connectSpread,
  deadline,
  fmt,
  log,
  opt,
  optList,
  printTable,
  sample,
  startGenerators,
  startServer,
  stopAll,
  writeResult,
} from '../lib/harness';
import { availableServers } from '../lib/servers';
import { BENCH_SECRET } from '../lib/token';

export interface ConnectRow {
  server: ServerKind;
  sockets: number;
  joined: number;
  failed: number;
  retries: number;
  seconds: number;
  perSecond: number;
  serverCpuUsPerConnect: number;
  serverSysShare: number;
  badTokenRefused: boolean;
}

export async function runConnect(): Promise<ConnectRow[]> {
  const kinds = optList('servers', availableServers()) as ServerKind[];
  const n = opt('sockets', 10_000);
  const nGens = opt('gens', 2);
  const inflight = opt('inflight', 100);
  const bound = deadline(opt('max-seconds', 600) * 1000, 'connect');
  const token = new TokenSigner(BENCH_SECRET).mint('bench-user', 3600);
  const rows: ConnectRow[] = [];
  let port = opt('port', 4400);
  try {
    for (const kind of kinds) {
      const server = await startServer(
        kind,
        { port: port++, env: { BENCH_AUTH_SECRET: BENCH_SECRET }, cpuProf: opt('cpu-prof', false) },
        `${kind}#0`,
      );
      const gens = await startGenerators(nGens);
      try {
        const target = [{ host: '127.0.0.1', port: server.port! }];
        // A wrong token must be refused, or the figure below would not include a real check.
        const bad = await connectSpread(gens.slice(0, 1), {
          proto: PROTO[kind],
          targets: target,
          total: 1,
          base: 1_000_000,
          topicPrefix: 'room:',
          topicCount: 1,
          topicsPerConn: 1,
          concurrency: 1,
          heartbeatMs: 0,
          timeoutMs: 10_000,
          token: `${token}x`,
          maxAttempts: 1,
        });
        await Promise.all(gens.map((g) => g.rpc.call('closeAll')));
        await sleep(300);
        const s0 = sample([server]);
        const c = await connectSpread(gens, {
          proto: PROTO[kind],
          targets: target,
          total: n,
          topicPrefix: 'room:',
          topicCount: 1000,
          topicsPerConn: 1,
          concurrency: inflight,
          heartbeatMs: 30_000,
          timeoutMs: 120_000,
          token,
          maxAttempts: 1,
        });
        const s1 = sample([server]);
        const r: ConnectRow = {
          server: kind,
          sockets: n,
          joined: c.joined,
          failed: c.failed,
          retries: c.retries,
          seconds: c.wallMs / 1000,
          perSecond: c.joined / (c.wallMs / 1000),
          serverCpuUsPerConnect: ((s1.cpuSec - s0.cpuSec) * 1e6) / Math.max(1, c.joined),
          serverSysShare: (s1.sysSec - s0.sysSec) / Math.max(1e-9, s1.cpuSec - s0.cpuSec),
          badTokenRefused: bad.joined === 0,
        };
        log(
          `${kind}: ${c.joined}/${n} joined in ${fmt(r.seconds, 2)} s = ${fmt(r.perSecond, 0)}/s; bad token refused: ${r.badTokenRefused}`,
        );
        rows.push(r);
      } finally {
        await stopAll(gens);
        await stopAll([server]);
      }
      await sleep(1000);
    }
  } finally {
    clearTimeout(bound);
  }
  report(rows);
  return rows;
}

export function report(rows: ConnectRow[]): string {
  const sio = rows.find((r) => r.server === 'sio');
  const table: Row[] = rows.map((r) => ({
    server: r.server,
    joined: `${r.joined}/${r.sockets}`,
    seconds: fmt(r.seconds, 2),
    'connect+join/s': fmt(r.perSecond, 0),
    '× Socket.IO': fmt(r.perSecond / (sio?.perSecond ?? NaN), 2),
    'server CPU µs/connect': fmt(r.serverCpuUsPerConnect, 0),
    'server sys %': fmt(r.serverSysShare * 100, 0),
    // What one fully busy server core could take if the clients were free (they share the 2 cores here).
    'server-bound ceiling /s/core': fmt(1e6 / r.serverCpuUsPerConnect, 0),
    'bad token refused': r.badTokenRefused ? 'yes' : 'NO',
  }));
  const out = printTable('(d) connect + join with token verification', table);
  writeResult('connect', { rows });
  return out;
}

if (require.main === module) {
  runConnect().then(
    () => process.exit(0),
    (e: unknown) => {
      console.error(e);
      process.exit(1);
    },
  );
}
