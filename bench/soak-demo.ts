/**
 * Soak in demo mode (issue 23, item 11): one gateway process with its built-in stand-in, under a
 * steady load, its RSS sampled at intervals. The load: 5 tasks a second from 20 users (image,
 * video and text in turn), 200 sockets joined to the users' `tasks:<user>` feeds, and 10 sockets a
 * second that connect, join a feed and close. A flat RSS in the second half is the goal.
 *
 *   npx tsx bench/soak-demo.ts --minutes=20              # PostgreSQL (a fresh database), as the issue ran it
 *   npx tsx bench/soak-demo.ts --minutes=5 --pglite      # the embedded database in a temporary DATA_DIR
 *   options: --sample-seconds=30 --port=4710; PYRE_BENCH_BUILT=1 runs dist/ (npm run build first)
 *
 * Prints one line per sample (minute, RSS MiB, tasks created / succeeded / failed so far) and a
 * summary comparing the first and second halves; writes bench/results/soak-demo.json.
 */
import { mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Socket } from 'phoenix';
import { request } from 'undici';
import WebSocket from 'ws';
import { TokenSigner } from '../src/auth/tokens';
import { nowMs, sleep } from './lib/clock';
import { AUTH_SECRET, freshDatabase, httpAgent, postJson, startGateway, stopGateway } from './lib/gateway';
import { BENCH_DIR } from './lib/harness';

const arg = (name: string, fallback: string) =>
  process.argv.find((a) => a.startsWith(`--${name}=`))?.slice(name.length + 3) ?? fallback;
const MINUTES = Number(arg('minutes', '20'));
const SAMPLE_S = Number(arg('sample-seconds', '30'));
const PORT = Number(arg('port', '4710'));
const PGLITE = process.argv.includes('--pglite');
const USERS = 20;
const TASKS_PER_S = 5;
const FEED_SOCKETS = 200;
const CHURN_PER_S = 10;
const KINDS = [
  { type: 'image', prompt: 'a lighthouse at dusk' },
  { type: 'video', prompt: 'waves on a pier' },
  { type: 'text', prompt: 'Say hello' },
];

const signer = new TokenSigner(AUTH_SECRET);
const users = Array.from({ length: USERS }, (_, i) => `soak${i}`);
const tokens = new Map(users.map((u) => [u, signer.mint(u, 24 * 3600)]));

function rssMiB(pid: number): number {
  const m = /VmRSS:\s+(\d+) kB/.exec(readFileSync(`/proc/${pid}/status`, 'utf8'));
  return m ? Math.round(Number(m[1]) / 1024) : NaN;
}

function feedSocket(url: string, user: string): Promise<Socket> {
  const socket = new Socket(`${url.replace(/^http/, 'ws')}/socket`, {
    transport: WebSocket as unknown as typeof globalThis.WebSocket,
    params: { token: tokens.get(user)! },
    reconnectAfterMs: () => 1000,
  });
  socket.connect();
  return new Promise((resolve, reject) => {
    socket
      .channel(`tasks:${user}`)
      .join(10_000)
      .receive('ok', () => resolve(socket))
      .receive('error', (e: unknown) => {
        socket.disconnect(); // a failed join must not leave a socket reconnecting for ever
        reject(new Error(`join tasks:${user}: ${JSON.stringify(e)}`));
      })
      .receive('timeout', () => {
        socket.disconnect();
        reject(new Error(`join tasks:${user}: timeout`));
      });
  });
}

async function main(): Promise<void> {
  const dataDir = mkdtempSync(join(tmpdir(), 'pyre-soak-'));
  const env: Record<string, string> = {
    RUNNER_ENABLED: 'true',
    DATA_DIR: dataDir,
    REPLICATE_API_TOKEN: '', // demo mode: the built-in stand-in
    DATABASE_URL: PGLITE ? '' : freshDatabase('pyre_bench_soak_demo'),
  };
  const gw = await startGateway(PORT, env);
  const counts = { created: 0, refused: 0, churned: 0, churnFailed: 0 };
  const samples: Array<{ minute: number; rssMiB: number; created: number; succeeded: number; failed: number }> = [];
  const feeds: Socket[] = [];
  for (let i = 0; i < FEED_SOCKETS; i++) feeds.push(await feedSocket(gw.url, users[i % USERS]!));

  const statusCounts = async () => {
    let succeeded = 0;
    let failed = 0;
    for (const u of users) {
      for (const [status, add] of [
        ['succeeded', (n: number) => (succeeded += n)],
        ['failed', (n: number) => (failed += n)],
      ] as const) {
        // One page of 200 is enough to tell whether tasks fail; the total succeeded is counted by paging.
        let cursor: string | null = null;
        do {
          const q: string = `status=${status}&limit=200${cursor ? `&cursor=${cursor}` : ''}`;
          const r = await request(`${gw.url}/api/tasks?${q}`, {
            dispatcher: httpAgent,
            headers: { authorization: `Bearer ${tokens.get(u)!}` },
          });
          const page = (await r.body.json()) as { data: unknown[]; next_cursor: string | null };
          add(page.data.length);
          cursor = page.next_cursor;
        } while (cursor);
      }
    }
    return { succeeded, failed };
  };

  const started = nowMs();
  const endAt = started + MINUTES * 60_000;
  let stop = false;
  const submitLoop = (async () => {
    for (let n = 0, due = started; !stop; n++, due += 1000 / TASKS_PER_S) {
      // Steady: a stall (a busy machine) is not made up for with a burst.
      due = Math.max(due, nowMs() - 1000);
      if (due > nowMs()) await sleep(due - nowMs());
      const user = users[n % USERS]!;
      const kind = KINDS[n % KINDS.length]!;
      void postJson(`${gw.url}/api/tasks`, tokens.get(user)!, { input_data: { ...kind } })
        .then((r) => (r.status >= 200 && r.status < 300 ? counts.created++ : counts.refused++))
        .catch(() => counts.refused++);
    }
  })();
  const churnLoop = (async () => {
    for (let n = 0, due = started; !stop; n++, due += 1000 / CHURN_PER_S) {
      due = Math.max(due, nowMs() - 1000);
      if (due > nowMs()) await sleep(due - nowMs());
      void feedSocket(gw.url, users[n % USERS]!)
        .then((s) => {
          counts.churned++;
          s.disconnect();
        })
        .catch(() => counts.churnFailed++);
    }
  })();

  const sample = async () => {
    const minute = (nowMs() - started) / 60_000;
    const rss = rssMiB(gw.pid);
    const created = counts.created;
    // A busy machine may time a count out: the sample is still taken.
    const { succeeded, failed } = await statusCounts().catch(() => ({ succeeded: NaN, failed: NaN }));
    samples.push({ minute: Number(minute.toFixed(1)), rssMiB: rss, created, succeeded, failed });
    console.log(
      `t=${minute.toFixed(1).padStart(5)} min  rss=${String(rss).padStart(4)} MiB  created=${created} ` +
        `succeeded=${succeeded} failed=${failed} refused=${counts.refused} churn=${counts.churned}/${counts.churnFailed} failed`,
    );
  };
  console.log(
    `soak: demo mode, ${PGLITE ? 'PGlite' : 'PostgreSQL'}, ${TASKS_PER_S} tasks/s from ${USERS} users, ` +
      `${FEED_SOCKETS} feed sockets, ${CHURN_PER_S} connect/join/close a second, ${MINUTES} min, RSS every ${SAMPLE_S} s`,
  );
  await sample();
  while (nowMs() < endAt) {
    await sleep(Math.min(SAMPLE_S * 1000, endAt - nowMs()));
    await sample();
  }
  stop = true;
  await Promise.all([submitLoop, churnLoop]);
  for (const s of feeds) s.disconnect();
  await stopGateway(gw);
  rmSync(dataDir, { recursive: true, force: true });

  const half = samples.filter((s) => s.minute >= MINUTES / 2);
  const first = samples.filter((s) => s.minute < MINUTES / 2 && s.minute > 0);
  const range = (xs: typeof samples) =>
    xs.length ? `${Math.min(...xs.map((s) => s.rssMiB))}-${Math.max(...xs.map((s) => s.rssMiB))} MiB` : '-';
  console.log(`first half RSS ${range(first)}; second half RSS ${range(half)}`);
  mkdirSync(join(BENCH_DIR, 'results'), { recursive: true });
  writeFileSync(
    join(BENCH_DIR, 'results', 'soak-demo.json'),
    JSON.stringify({ minutes: MINUTES, pglite: PGLITE, counts, samples }, null, 2),
  );
  process.exit(0);
}

main().catch((err) => {
  console.error(err);
  process.exit(1);
});
