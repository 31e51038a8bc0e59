/**
 * Issue 12, acceptance 6: the deployment shape. Three gateway processes on one PostgreSQL behind
 * HAProxy (round-robin, no stickiness; the config of docs/haproxy.cfg), 100 tasks created through
 * the balancer (so on any process) and 200 sockets watching them through it (so from any other):
 * phoenix.js over WebSocket, phoenix.js over long-poll, and Swift-shaped raw V2 frames. While the
 * tasks run, every process is SIGTERMed and restarted in turn, then one is killed with SIGKILL.
 * Figures printed: tasks finished, predictions per task, events lost and duplicated per socket,
 * long-poll requests refused.
 *
 * The stand-in's clock is virtual and paced by the test: PACE× until the kill -9 (the
 * predictions take PROCESSING_MS of it, so every task is running through the restarts and the
 * kill, whatever the machine's speed), then FINISH_PACE× so they end soon after, then 1×.
 */
import WebSocket from 'ws';
import { LongPoll, Socket } from 'phoenix';
import { TokenSigner } from '../../src/auth/tokens';
import { migrate } from '../../src/db';
import { startStandin, type Standin } from '../../src/providers/replicate/standin';
import { freshDb, TEST_PG_URL, type TestDb } from '../helpers/db';
import { call, TEST_SECRET } from '../helpers/gateway';
import { spawnGateway, type GatewayProcess } from '../helpers/gateway-process';
import { haproxyAvailable, startHaproxy, type Haproxy } from '../helpers/haproxy';
import { waitFor } from '../runner/helpers';

const TASKS = 100;
const PHOENIX_WS = 100; // task i, i < 100
const PHOENIX_LP = 50; // tasks 0..49
const SWIFT = 50; // tasks 50..99
const MODEL = 'google/imagen-4-fast';
/** The predictions' length in the stand-in's (virtual) time. */
const PROCESSING_MS = 5 * 60_000;
/** Virtual ms per real ms until the kill -9: PROCESSING_MS lasts 75 real seconds (a create waits at most 15). */
const PACE = 4;
/** Virtual ms per real ms after it: the predictions end within 3 real seconds. */
const FINISH_PACE = 100;
const token = new TokenSigner(TEST_SECRET).mint('fleet');

const canRun = Boolean(TEST_PG_URL) && haproxyAvailable();
if (!canRun) {
  if (process.env.CI === 'true' && TEST_PG_URL) throw new Error('CI: HAProxy is missing (apt-get install haproxy)');
  console.info('tests/deployment/balancer.test.ts: skipped: needs PYRE_TEST_DATABASE_URL and HAProxy');
}

/** What one watching socket saw of its task: the seqs, in arrival order. */
interface Watcher {
  kind: 'phoenix-ws' | 'phoenix-longpoll' | 'swift';
  taskIndex: number;
  seqs: number[];
  done: boolean;
  close(): void;
}

/**
 * Long-poll answers phoenix.js got, counted at its fetch: by status (200, 204, 410, …, and HTTP
 * errors from the balancer), and `refused`: answers to a request of an existing session (it
 * carries the session's token) that were not 200/204, i.e. the session was lost or unreachable.
 * (A GET without a session token is answered 410 + a new token: that is how a session starts.)
 */
const longPollAnswers = new Map<number, number>();
let longPollRefused = 0;
/** The refused answers by phase and status. */
const refusedByStatus: Record<string, number> = {};
let phase = 'before_restarts';
const realFetch = globalThis.fetch;

function phoenixWatcher(base: string, kind: 'phoenix-ws' | 'phoenix-longpoll', taskIndex: number, taskId: string) {
  const socket = new Socket(`${base.replace(/^http/, 'ws')}/socket`, {
    transport: (kind === 'phoenix-ws' ? WebSocket : LongPoll) as never,
    // The credential travels as authToken, so a `token` in a long-poll URL is the session's.
    authToken: token,
    reconnectAfterMs: () => 200,
    rejoinAfterMs: () => 200,
    heartbeatIntervalMs: 15_000,
    longpollerTimeout: 30_000,
  });
  const w: Watcher = { kind, taskIndex, seqs: [], done: false, close: () => socket.disconnect() };
  // A rejoin (after a restart) asks for what came after the last event this socket saw.
  const channel = socket.channel(`task:${taskId}`, () => ({ last_seq: w.seqs.length ? Math.max(...w.seqs) : 0 }));
  for (const ev of ['status', 'progress', 'image_response'])
    channel.on(ev, (p: { seq: number }) => {
      w.seqs.push(p.seq);
      if (ev === 'image_response') w.done = true;
    });
  socket.connect();
  channel.join();
  return w;
}

/** SwiftPhoenixClient-shaped: raw V2 frames, its own reconnect and rejoin with last_seq. */
function swiftWatcher(base: string, taskIndex: number, taskId: string): Watcher {
  const topic = `task:${taskId.toUpperCase()}`; // Swift's uuidString
  let ws: WebSocket | undefined;
  let stopped = false;
  let ref = 0;
  const w: Watcher = {
    kind: 'swift',
    taskIndex,
    seqs: [],
    done: false,
    close: () => {
      stopped = true;
      ws?.terminate();
    },
  };
  const connect = () => {
    if (stopped) return;
    const s = new WebSocket(`${base.replace(/^http/, 'ws')}/socket/websocket?vsn=2.0.0&token=${token}`);
    ws = s;
    let joinRef = '';
    const join = () => {
      joinRef = String(++ref);
      const last = w.seqs.length ? Math.max(...w.seqs) : 0;
      s.send(JSON.stringify([joinRef, joinRef, topic, 'phx_join', { last_seq: last }]));
    };
    const beat = setInterval(() => {
      if (s.readyState === WebSocket.OPEN) s.send(JSON.stringify([null, String(++ref), 'phoenix', 'heartbeat', {}]));
    }, 15_000);
    s.on('open', join);
    s.on('message', (d: Buffer) => {
      const [jr, r, t, event, payload] = JSON.parse(d.toString());
      if (t !== topic) return;
      if (event === 'phx_reply' && r === jr && payload.status !== 'ok')
        setTimeout(() => s.readyState === 1 && join(), 300);
      else if ((event === 'phx_error' || event === 'phx_close') && jr === joinRef) setTimeout(join, 200);
      else if (typeof payload?.seq === 'number' && ['status', 'progress', 'image_response'].includes(event)) {
        w.seqs.push(payload.seq);
        if (event === 'image_response') w.done = true;
      }
    });
    s.on('error', () => {});
    s.on('close', () => {
      clearInterval(beat);
      if (!stopped) setTimeout(connect, 200);
    });
  };
  connect();
  return w;
}

(canRun ? describe : describe.skip)('three processes behind HAProxy: rolling restart and kill -9 under load', () => {
  let standin: Standin;
  let tdb: TestDb;
  let hp: Haproxy;
  const procs: GatewayProcess[] = [];
  /** Every process the suite started (restarted ones too), for their logs. */
  const allProcs: GatewayProcess[] = [];
  const watchers: Watcher[] = [];
  let env: Record<string, string>;
  let stopPacing = async () => {};

  beforeAll(async () => {
    // Count long-poll answers as phoenix.js receives them (it uses fetch in Node).
    globalThis.fetch = (async (input: Parameters<typeof fetch>[0], init?: RequestInit) => {
      const res = await realFetch(input, init);
      if (String(input).includes('/socket/longpoll')) {
        const body =
          res.status === 200
            ? ((await res
                .clone()
                .json()
                .catch(() => ({}))) as { status?: number })
            : {};
        const status = res.status === 200 ? (body.status ?? 0) : res.status;
        longPollAnswers.set(status, (longPollAnswers.get(status) ?? 0) + 1);
        if (new URL(String(input)).searchParams.has('token') && status !== 200 && status !== 204) {
          longPollRefused++;
          refusedByStatus[`${phase}:${status}`] = (refusedByStatus[`${phase}:${status}`] ?? 0) + 1;
        }
      }
      return res;
    }) as typeof fetch;
    standin = await startStandin({ clock: 'virtual', host: '127.0.0.1' });
    standin.faults.timelines[MODEL] = { queueMs: 300, processingMs: PROCESSING_MS };
    // The provider's throttling is not what this suite is about (tests/providers and
    // tests/runner cover 429s): with the stand-in's default budget, 100 tasks polled every 200 ms
    // waited out minute-long throttles.
    standin.faults.rateLimits = { createPerMinute: 100_000, otherPerMinute: 1_000_000 };
    tdb = await freshDb('postgres');
    await migrate(tdb.db);
    env = {
      REPLICATE_API_TOKEN: standin.token,
      REPLICATE_BASE_URL: standin.url,
      RUNNER_ENABLED: 'true',
      RUNNER_CONCURRENCY: '100',
      AUTH_SECRET: TEST_SECRET,
      LOG_LEVEL: 'warn',
      RATE_LIMIT_TASKS_PER_MINUTE: '0',
      PYRE_FIXTURE_PG_URL: TEST_PG_URL!,
      PYRE_FIXTURE_PG_SCHEMA: tdb.schema!,
      // Up to five processes at once (one booting while one stops) on a PostgreSQL others share too.
      PYRE_FIXTURE_PG_POOL_MAX: '4',
      PYRE_FIXTURE_RUNNER: JSON.stringify({ leaseMs: 2000, pollIntervalMs: 200, claimIntervalMs: 100 }),
      // Nor pyre's own provider budgets (100 tasks polled every 200 ms are 500 reads a second).
      PROVIDER_CREATES_PER_MINUTE: '100000',
      PROVIDER_READS_PER_MINUTE: '1000000',
      // A SIGTERMed process gives its running tasks 1 s, then releases them to the others (who
      // look their predictions up, never make them twice): a shorter restart, the resume path exercised.
      PYRE_FIXTURE_STOP_GRACE_MS: '1000',
    };
    const started = await Promise.allSettled([0, 1, 2].map(() => spawnGateway(env)));
    for (const r of started) if (r.status === 'fulfilled') allProcs.push(r.value);
    for (const r of started) if (r.status === 'rejected') throw r.reason;
    procs.push(...allProcs);
    hp = await startHaproxy({
      backends: procs.map((p, i) => ({ name: `g${i}`, port: Number(new URL(p.url).port) })),
      checkIntervalMs: 500,
      fall: 2,
    });
  }, 180_000);
  afterAll(async () => {
    await stopPacing();
    globalThis.fetch = realFetch;
    for (const w of watchers) w.close();
    await hp?.close();
    await Promise.all(allProcs.map((p) => p.kill9()));
    await tdb?.drop();
    await standin?.close();
  });

  it(`${TASKS} tasks and ${PHOENIX_WS + PHOENIX_LP + SWIFT} sockets through a rolling restart and a kill -9`, async () => {
    const started = Date.now();
    // The stand-in's time moves on at `pace`.
    let pace = PACE;
    let pacing = true;
    const paced = (async () => {
      for (let last = Date.now(); pacing;) {
        await new Promise((r) => setTimeout(r, 100));
        const now = Date.now();
        await standin.advance((now - last) * pace);
        last = now;
      }
    })();
    stopPacing = async () => {
      pacing = false;
      await paced;
    };
    // The first replacement boots meanwhile (in a rolling restart each is up before its old process stops).
    // Every process started is in allProcs, so afterAll stops it even if the test fails first.
    const boot = () => spawnGateway(env).then((p) => (allProcs.push(p), p));
    let booting = boot();
    const ids: string[] = [];
    await Promise.all(
      Array.from({ length: 10 }, async (_, lane) => {
        for (let i = lane; i < TASKS; i += 10) {
          const res = await call(`${hp.url}/api/tasks`, {
            token,
            body: { input_data: { type: 'image', model: MODEL, prompt: `fleet task ${i}` } },
          });
          expect(res.status).toBe(202);
          ids[i] = res.body.task_id;
        }
      }),
    );
    for (let i = 0; i < PHOENIX_WS; i++) watchers.push(phoenixWatcher(hp.url, 'phoenix-ws', i, ids[i]!));
    for (let i = 0; i < PHOENIX_LP; i++) watchers.push(phoenixWatcher(hp.url, 'phoenix-longpoll', i, ids[i]!));
    for (let i = 0; i < SWIFT; i++) watchers.push(swiftWatcher(hp.url, 50 + i, ids[50 + i]!));
    const phases: Record<string, number> = { created: Date.now() - started };
    const silent = () =>
      JSON.stringify({
        silent: watchers.filter((w) => w.seqs.length === 0).map((w) => `${w.kind}:${w.taskIndex}`),
        longpoll: Object.fromEntries(longPollAnswers),
      });
    await waitFor(
      'every socket to get a first event',
      () => watchers.every((w) => w.seqs.length > 0) || Promise.reject(new Error(silent())),
      120_000,
      200,
    );
    phases.watching = Date.now() - started;
    // The restarts begin once every task runs (its prediction made).
    await waitFor(
      'every task to run',
      async () => {
        const page = await call(`${hp.url}/api/tasks?limit=100`, { token });
        return page.status === 200 && page.body.data.every((t: { status: string }) => t.status === 'processing');
      },
      120_000,
      200,
    );
    phases.running = Date.now() - started;
    const refusedBefore = longPollRefused;
    phase = 'rolling_restart';

    // Rolling restart, in turn, as behind a real balancer: the replacement is up, the
    // balancer's server is pointed at it, then the old process is SIGTERMed (it drains: its
    // WebSockets close 1012 and clients reconnect through the balancer; its long-poll sessions
    // are handed to the other processes).
    for (let i = 0; i < procs.length; i++) {
      const next = await booting;
      // The next one boots while this one stops (one more process at a time: PostgreSQL's connections are shared).
      if (i + 1 < procs.length) booting = boot();
      await hp.setServer(`g${i}`, Number(new URL(next.url).port));
      const old = procs[i]!;
      procs[i] = next;
      await old.stop();
      phases[`restarted_g${i}`] = Date.now() - started;
    }
    phases.rolled = Date.now() - started;
    // kill -9 of one process; it is not restarted (HAProxy's health check takes it out).
    const runningAtKill = (await call(`${hp.url}/api/tasks?limit=100`, { token })).body.data.filter(
      (t: { status: string }) => t.status !== 'succeeded',
    ).length;
    const refusedRolling = longPollRefused - refusedBefore;
    phase = 'after_kill9';
    await procs[1]!.kill9();
    const killedAt = Date.now();
    // Then the predictions reach their end, and time goes on at its own pace (faster, the
    // outputs of tasks resumed late would expire: the stand-in removes them an hour after).
    pace = FINISH_PACE;
    const finishing = setTimeout(() => (pace = 1), PROCESSING_MS / FINISH_PACE + 1000);
    let unfinished: string[] = [];
    await waitFor(
      'every task to end',
      async () => {
        const page = await call(`${hp.url}/api/tasks?limit=100`, { token });
        if (page.status !== 200) throw new Error(`GET /api/tasks: ${page.status}`);
        const open = (page.body.data as { id: string; status: string }[]).filter((t) => t.status !== 'succeeded');
        if (open.length === 0) return true;
        unfinished = open.map((t) => t.id);
        throw new Error(`${open.length} not succeeded: ${open.map((t) => `${t.id}:${t.status}`).join(' ')}`);
      },
      120_000,
      200,
    ).catch(async (err: unknown) => {
      // What became of the first ones, and what the processes said about them, to tell why.
      for (const id of unfinished.slice(0, 3)) {
        const task = (await call(`${hp.url}/api/tasks/${id}`, { token })).body.data as Record<string, unknown>;
        process.stdout.write(`task ${id}: ${JSON.stringify({ status: task.status, error: task.error })}\n`);
        for (const p of allProcs)
          for (const l of p.logs.filter((x) => x.task_id === id))
            process.stdout.write(`  ${p.pid} ${JSON.stringify(l)}\n`);
      }
      throw err;
    });
    phases.tasks_done = Date.now() - started;
    clearTimeout(finishing);
    await waitFor('every socket to get its final event', () => watchers.every((w) => w.done), 60_000, 100);
    phases.sockets_done = Date.now() - started;
    const refusedAfterKill = longPollRefused - refusedBefore - refusedRolling;

    // Figures.
    const finals = await Promise.all(
      ids.map((id) =>
        waitFor(`events of ${id}`, async () => {
          const res = await call(`${hp.url}/api/tasks/${id}/events`, { token });
          return res.status === 200 ? (res.body.data as { seq: number }[]) : null;
        }),
      ),
    );
    const predictions = ids.map(
      (_, i) =>
        standin
          .creates()
          .filter((r) => (r.body as { input?: { prompt?: string } })?.input?.prompt === `fleet task ${i}`).length,
    );
    let lost = 0;
    let duplicated = 0;
    const bad: string[] = [];
    for (const w of watchers) {
      const expected = finals[w.taskIndex]!.map((e) => e.seq);
      const got = new Set(w.seqs);
      const l = expected.filter((s) => !got.has(s)).length;
      const d = w.seqs.length - got.size;
      lost += l;
      duplicated += d;
      if (l || d) bad.push(`${w.kind} task ${w.taskIndex}: lost ${l}, duplicated ${d} (${w.seqs.join(',')})`);
    }
    const finished = (await call(`${hp.url}/api/tasks?limit=100&status=succeeded`, { token })).body.data.length;
    const figures = {
      tasks_finished: `${finished}/${TASKS}`,
      tasks_running_at_kill9: runningAtKill,
      predictions_per_task: { min: Math.min(...predictions), max: Math.max(...predictions) },
      sockets: watchers.length,
      events_lost: lost,
      events_duplicated: duplicated,
      sockets_with_loss_or_duplicate: bad.length,
      longpoll_answers: Object.fromEntries(longPollAnswers),
      longpoll_refused_by_phase_and_status: refusedByStatus,
      // Why sessions were lost, from the processes' logs (warn level).
      longpoll_owner_not_answering: allProcs.reduce(
        (n, p) => n + p.logs.filter((l) => l.msg === 'realtime: long-poll session owner did not answer').length,
        0,
      ),
      longpoll_refused: {
        before_restarts: refusedBefore,
        rolling_restart: refusedRolling,
        after_kill9: refusedAfterKill,
      },
      ms_from_kill_to_all_done: Date.now() - killedAt,
      ms_since_start: phases,
    };
    process.stdout.write(`deployment figures: ${JSON.stringify(figures)}\n`);
    expect(bad).toEqual([]);
    expect(finished).toBe(TASKS);
    expect(predictions.every((n) => n === 1)).toBe(true);
    expect(refusedBefore).toBe(0);
    // A SIGTERMed process hands its long-poll sessions over: no long-poll request is refused in
    // the rolling restart. (A kill -9ed owner's sessions are lost: phoenix.js reconnects and rejoins.)
    expect(refusedRolling).toBe(0);
    // Every task was still running when the processes restarted and one was killed.
    expect(runningAtKill).toBe(TASKS);
  }, 480_000);
});
