/**
 * Issue 12, long-poll across processes: three gateway processes on one PostgreSQL behind HAProxy
 * (round-robin, no stickiness), driven by phoenix.js forced to long-poll through the balancer.
 * Each request of a session may land on any process; the one that holds the session answers
 * through the others (the cluster bus), so the client sees one uninterrupted session, even
 * while the process holding it is stopped gracefully (it hands the session to another).
 */
import { LongPoll, Socket } from 'phoenix';
import { TokenSigner } from '../../src/auth/tokens';
import { migrate } from '../../src/db';
import type { Standin } from '../../src/providers/replicate/standin';
import {
  expectCleanSequence,
  fastStandin,
  joinRecording,
  joinResuming,
  standinEnv,
  waitFor,
} from '../channels/helpers';
import { freshDb, TEST_PG_URL, type TestDb } from '../helpers/db';
import { call, TEST_SECRET } from '../helpers/gateway';
import { spawnGateway, type GatewayProcess } from '../helpers/gateway-process';
import { haproxyAvailable, startHaproxy, type Haproxy } from '../helpers/haproxy';

const alice = new TokenSigner(TEST_SECRET).mint('alice');
const IMAGE_MODEL = 'google/imagen-4-fast';

const canRun = Boolean(TEST_PG_URL) && haproxyAvailable();
if (!canRun) {
  if (process.env.CI === 'true' && TEST_PG_URL) throw new Error('CI: HAProxy is missing (apt-get install haproxy)');

  console.info('tests/cluster/longpoll-balancer.test.ts: skipped: needs PYRE_TEST_DATABASE_URL and HAProxy');
}

/** A phoenix.js socket forced to long-poll, counting what phoenix.js does when a session is lost. */
function longPollSocket(baseUrl: string): { socket: Socket; opens: number[]; errors: unknown[]; closes: unknown[] } {
  const socket = new Socket(`${baseUrl.replace(/^http/, 'ws')}/socket`, {
    transport: LongPoll as never,
    authToken: alice,
    reconnectAfterMs: () => 100,
    rejoinAfterMs: () => 100,
    heartbeatIntervalMs: 2000,
  });
  const opens: number[] = [];
  const errors: unknown[] = [];
  const closes: unknown[] = [];
  socket.onOpen(() => {
    opens.push(Date.now());
  });
  socket.onError((e) => {
    errors.push(e);
  });
  socket.onClose((e) => {
    closes.push(e);
  });
  socket.connect();
  return { socket, opens, errors, closes };
}

/** Requests each HAProxy server has been sent (`show stat`, column `stot`), by server name. */
async function requestsPerServer(hp: Haproxy): Promise<Record<string, number>> {
  const csv = (await hp.command('show stat')).trim().split('\n');
  const head = csv[0]!.replace(/^# /, '').split(',');
  const out: Record<string, number> = {};
  for (const line of csv.slice(1)) {
    const f = line.split(',');
    const row = Object.fromEntries(head.map((h, i) => [h, f[i]]));
    if (row.pxname === 'gateways' && row.svname !== 'BACKEND') out[row.svname!] = Number(row.stot);
  }
  return out;
}

/** The long-poll sessions one process holds (its /metrics gauge). */
async function sessionsHeldBy(p: GatewayProcess): Promise<number> {
  const text = await (await fetch(`${p.url}/metrics`, { headers: { authorization: `Bearer ${alice}` } })).text();
  const m = /^pyre_realtime_longpoll_sessions (\d+)/m.exec(text);
  if (!m) throw new Error(`no long-poll gauge in /metrics of ${p.url}: ${text.slice(0, 200)}`);
  return Number(m[1]);
}

(canRun ? describe : describe.skip)('long-poll through a round-robin balancer over three processes', () => {
  let standin: Standin;
  let tdb: TestDb;
  let hp: Haproxy;
  const procs: GatewayProcess[] = [];
  let env: Record<string, string>;

  beforeAll(async () => {
    standin = await fastStandin();
    tdb = await freshDb('postgres');
    await migrate(tdb.db);
    env = {
      ...standinEnv(standin),
      AUTH_SECRET: TEST_SECRET,
      LOG_LEVEL: 'warn',
      PYRE_FIXTURE_PG_URL: TEST_PG_URL!,
      PYRE_FIXTURE_PG_SCHEMA: tdb.schema!,
      PYRE_FIXTURE_RUNNER: JSON.stringify({ leaseMs: 2000, pollIntervalMs: 100, claimIntervalMs: 100 }),
      // A SIGTERMed process gives its running tasks 1 s, then releases them to the others.
      PYRE_FIXTURE_STOP_GRACE_MS: '1000',
    };
    procs.push(...(await Promise.all([0, 1, 2].map(() => spawnGateway(env)))));
    hp = await startHaproxy({
      backends: procs.map((p, i) => ({ name: `g${i}`, port: Number(new URL(p.url).port) })),
    });
  }, 180_000);
  afterAll(async () => {
    await hp?.close();
    await Promise.all(procs.map((p) => p.stop()));
    await tdb?.drop();
    await standin?.close();
  });

  it('completes a task from join to image_response with no 410 and no reconnect (issue 12, acceptance 1)', async () => {
    const before = await requestsPerServer(hp);
    const created = await call(`${hp.url}/api/tasks`, {
      token: alice,
      body: { input_data: { type: 'image', prompt: 'through the balancer' } },
    });
    expect(created.status).toBe(202);
    const id = created.body.task_id as string;
    const { socket, opens, errors, closes } = longPollSocket(hp.url);
    try {
      const { events, joined } = joinRecording(socket, `task:${id}`, { last_seq: 0 });
      await joined;
      await waitFor('image_response', () => events.find((e) => e.event === 'image_response'), 60_000);
      expectCleanSequence(events, id);
      expect(events[events.length - 1]!.payload.status).toBe('success');
      // One session from start to end: phoenix.js opened once, never saw an error or a close
      // (a 410 on a known token, or any failed request, makes it close and reconnect).
      expect(opens).toHaveLength(1);
      expect(errors).toEqual([]);
      expect(closes).toEqual([]);
      // ...while its requests went to all three processes, two of which do not hold it.
      const after = await requestsPerServer(hp);
      for (const name of ['g0', 'g1', 'g2']) expect(after[name]! - (before[name] ?? 0)).toBeGreaterThan(0);
      const held = await Promise.all(procs.map(sessionsHeldBy));
      expect(held.reduce((a, b) => a + b, 0)).toBe(1);
    } finally {
      socket.disconnect();
    }
  }, 90_000);

  it('a session whose owner is SIGTERMed is handed over: no 410, no reconnect, every event once', async () => {
    await waitFor(
      'earlier long-poll sessions to expire',
      async () => (await Promise.all(procs.map(sessionsHeldBy))).every((n) => n === 0),
      60_000,
    );
    // Slow enough that the owner stops mid-task.
    standin.faults.timelines[IMAGE_MODEL] = { queueMs: 300, processingMs: 6000 };
    const created = await call(`${hp.url}/api/tasks`, {
      token: alice,
      body: { input_data: { type: 'image', prompt: 'owner stopped' } },
    });
    const id = created.body.task_id as string;
    const { socket, opens, errors, closes } = longPollSocket(hp.url);
    const { events, joined } = joinResuming(socket, `task:${id}`);
    try {
      await joined;
      await waitFor('a first event', () => events.length > 0, 30_000);
      const held = await Promise.all(procs.map(sessionsHeldBy));
      expect(held.filter((n) => n > 0)).toEqual([1]);
      const owner = held.indexOf(1);
      // As behind a real balancer: the replacement is up and pointed at, then the owner is SIGTERMed.
      const next = await spawnGateway(env);
      await hp.setServer(`g${owner}`, Number(new URL(next.url).port));
      const old = procs[owner]!;
      procs[owner] = next;
      await old.stop();
      await waitFor('image_response', () => events.find((e) => e.event === 'image_response'), 60_000);
      expectCleanSequence(events, id);
      expect(events[events.length - 1]!.payload.status).toBe('success');
      // One session throughout: no 410 (phoenix.js would close and reconnect), no error, one open.
      expect(opens).toHaveLength(1);
      expect(errors).toEqual([]);
      expect(closes).toEqual([]);
      // ...now held by a process that did not create it.
      const after = await Promise.all(procs.map(sessionsHeldBy));
      expect(after.reduce((a, b) => a + b, 0)).toBe(1);
    } finally {
      socket.disconnect();
      delete standin.faults.timelines[IMAGE_MODEL];
    }
  }, 180_000);

  it('a session whose owner is killed: phoenix.js reconnects, rejoins with last_seq and misses no event', async () => {
    // The first test's session expires (sessionTimeoutMs) so that the owner of this one is the
    // only process holding a session.
    await waitFor(
      'earlier long-poll sessions to expire',
      async () => (await Promise.all(procs.map(sessionsHeldBy))).every((n) => n === 0),
      60_000,
    );
    // Slow enough that the owner dies mid-task.
    standin.faults.timelines[IMAGE_MODEL] = { queueMs: 500, processingMs: 12_000 };
    const created = await call(`${hp.url}/api/tasks`, {
      token: alice,
      body: { input_data: { type: 'image', prompt: 'owner killed' } },
    });
    const id = created.body.task_id as string;
    const { socket, opens, errors } = longPollSocket(hp.url);
    // Every rejoin asks for what came after the last event this client saw.
    const { events, joined } = joinResuming(socket, `task:${id}`);
    try {
      await joined;
      await waitFor('a first event', () => events.length > 0, 30_000);
      const held = await Promise.all(procs.map(sessionsHeldBy));
      expect(held.filter((n) => n > 0)).toEqual([1]);
      const owner = held.indexOf(1);
      await procs[owner]!.kill9();
      // phoenix.js learns its session is gone (410 on its token, or a failed request), reconnects
      // through the balancer to a live process and rejoins from last_seq.
      await waitFor('reconnect', () => errors.length > 0 && opens.length >= 2, 45_000);
      await waitFor('image_response', () => events.find((e) => e.event === 'image_response'), 90_000);
      expectCleanSequence(events, id);
      expect(events[events.length - 1]!.payload.status).toBe('success');
    } finally {
      socket.disconnect();
      delete standin.faults.timelines[IMAGE_MODEL];
    }
  }, 240_000);
});
