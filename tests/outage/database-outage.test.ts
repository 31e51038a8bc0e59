/**
 * The database goes away and comes back while two gateway processes run tasks and clients listen
 * (issue: a PostgreSQL restart must not kill the gateway, lose an event or leave a task stuck).
 * The suite runs its own PostgreSQL (initdb + pg_ctl in a temp dir), never the shared one. It is
 * part of the PostgreSQL half of the run (PYRE_TEST_DATABASE_URL set, as CI does), which needs a
 * PostgreSQL installation anyway; the PGlite half stays quick on a machine without one.
 */
import knexFactory, { type Knex } from 'knex';
import WebSocket from 'ws';
import { TokenSigner } from '../../src/auth/tokens';
import { startStandin, type Standin } from '../../src/providers/replicate/standin';
import { cutBusConnections } from '../helpers/bus';
import { TEST_PG_URL } from '../helpers/db';
import { call, TEST_SECRET } from '../helpers/gateway';
import { spawnGateway, type GatewayProcess } from '../helpers/gateway-process';
import { ownPostgresUnavailable, startOwnPostgres, type OwnPostgres } from '../helpers/own-postgres';
import { waitFor } from '../channels/helpers';
import { EVERY_MODEL } from '../runner/helpers';

const wanted = TEST_PG_URL !== undefined;
const unavailable = wanted ? ownPostgresUnavailable() : 'runs with the PostgreSQL half';
if (wanted && unavailable && process.env.CI === 'true') {
  throw new Error(`the database outage suite cannot run under CI: ${unavailable}`);
}
if (wanted && unavailable) {
  console.warn(`SKIPPED database outage suite: ${unavailable}`);
}

const signer = new TokenSigner(TEST_SECRET);
const USERS = ['alice', 'bob'];
const TOKENS = Object.fromEntries(USERS.map((u) => [u, signer.mint(u)]));
/** The bound the README states for a REST answer while the database is down (the pool's acquire timeout). */
const REST_BOUND_MS = 10_000;

interface Got {
  event: string;
  taskId: string;
  seq: number;
  at: number;
}

/** A raw Phoenix v2 client (as SwiftPhoenixClient frames it): records every task event per topic. */
class RawClient {
  readonly ws: WebSocket;
  readonly byTopic = new Map<string, Got[]>();
  readonly replies = new Map<string, { status: string; response: Record<string, unknown> }>();
  closed = false;
  private ref = 0;
  private readonly opened: Promise<void>;
  private readonly beat: NodeJS.Timeout;

  constructor(base: string, token: string) {
    this.ws = new WebSocket(
      `${base.replace(/^http/, 'ws')}/socket/websocket?vsn=2.0.0&token=${encodeURIComponent(token)}`,
    );
    this.opened = new Promise((resolve, reject) => {
      this.ws.once('open', () => resolve());
      this.ws.once('error', reject);
    });
    this.ws.on('close', () => (this.closed = true));
    this.ws.on('error', () => undefined);
    this.ws.on('message', (data: Buffer) => {
      const [, ref, topic, event, payload] = JSON.parse(data.toString());
      if (event === 'phx_reply') {
        this.replies.set(ref, payload);
        return;
      }
      if (typeof payload?.seq !== 'number') return;
      const list = this.byTopic.get(topic) ?? [];
      list.push({ event, taskId: payload.task_id, seq: payload.seq, at: Date.now() });
      this.byTopic.set(topic, list);
    });
    this.beat = setInterval(() => {
      if (this.ws.readyState === WebSocket.OPEN)
        this.ws.send(JSON.stringify([null, String(++this.ref), 'phoenix', 'heartbeat', {}]));
    }, 10_000);
  }

  async join(topic: string, payload: Record<string, unknown> = {}): Promise<void> {
    await this.opened;
    const ref = String(++this.ref);
    this.byTopic.set(topic, this.byTopic.get(topic) ?? []);
    this.ws.send(JSON.stringify([ref, ref, topic, 'phx_join', payload]));
    const reply = await waitFor(`join ${topic}`, () => this.replies.get(ref), 20_000);
    if (reply.status !== 'ok') throw new Error(`join ${topic} refused: ${JSON.stringify(reply.response)}`);
  }

  close(): void {
    clearInterval(this.beat);
    this.ws.terminate();
  }
}

/** Whether `got` holds each seq 1..lastSeq of `taskId` exactly once, in order. */
function exactlyOnce(got: Got[], taskId: string, lastSeq: number): boolean {
  const seqs = got.filter((g) => g.taskId === taskId).map((g) => g.seq);
  return seqs.length === lastSeq && seqs.every((s, i) => s === i + 1);
}

(unavailable ? describe.skip : describe)('PostgreSQL outage under two gateway processes', () => {
  let pg: OwnPostgres;
  let standin: Standin;
  let db: Knex;
  const procs: GatewayProcess[] = [];
  const clients: RawClient[] = [];
  /** taskId → the client (on the other process than the one it was created on) watching task:<id>. */
  const watchers = new Map<string, RawClient>();
  /** user → the feed clients on each process. */
  const feeds = new Map<string, RawClient[]>();
  const owners = new Map<string, string>();

  beforeAll(async () => {
    pg = await startOwnPostgres();
    standin = await startStandin({ clock: { speed: 1 }, host: '127.0.0.1' });
    // Long enough that tasks are running when the database stops; text streams all along.
    for (const { providerModel: m } of EVERY_MODEL) standin.faults.timelines[m] = { queueMs: 300, processingMs: 8000 };
    db = knexFactory({ client: 'pg', connection: pg.url, pool: { min: 0, max: 2 } });
    for (let i = 0; i < 2; i++) {
      procs.push(
        await spawnGateway({
          PYRE_FIXTURE_PG_URL: pg.url,
          AUTH_SECRET: TEST_SECRET,
          REPLICATE_API_TOKEN: standin.token,
          REPLICATE_BASE_URL: standin.url,
          RUNNER_ENABLED: 'true',
          RUNNER_CONCURRENCY: '16',
          RATE_LIMIT_TASKS_PER_MINUTE: '0',
          LOG_LEVEL: 'warn',
          PYRE_FIXTURE_RUNNER: JSON.stringify({
            leaseMs: 3000,
            pollIntervalMs: 200,
            claimIntervalMs: 200,
            retry: { maxAttempts: 10, baseMs: 200, maxMs: 2000 },
          }),
        }),
      );
    }
    for (const u of USERS) {
      const list: RawClient[] = [];
      for (const p of procs) {
        const c = new RawClient(p.url, TOKENS[u]!);
        clients.push(c);
        await c.join(`tasks:${u}`);
        list.push(c);
      }
      feeds.set(u, list);
    }
  }, 180_000);

  afterAll(async () => {
    for (const c of clients) c.close();
    for (const p of procs) await p.stop();
    await db?.destroy();
    await standin?.close();
    pg?.destroy();
  });

  /** Create `n` mixed tasks over REST, alternating processes and users, each watched from the other process. */
  async function createTasks(n: number, tag: string): Promise<string[]> {
    const ids: string[] = [];
    const channelClients = procs.map((p) => USERS.map((u) => new RawClient(p.url, TOKENS[u]!)));
    clients.push(...channelClients.flat());
    for (let i = 0; i < n; i++) {
      const model = EVERY_MODEL[i % EVERY_MODEL.length]!;
      const user = USERS[i % USERS.length]!;
      const via = i % 2;
      const res = await call(`${procs[via]!.url}/api/tasks`, {
        token: TOKENS[user],
        body: { input_data: { type: model.type, prompt: `${tag} ${i}`, model: model.model } },
      });
      expect(res.status).toBe(202);
      const id = res.body.task_id as string;
      ids.push(id);
      owners.set(id, user);
      const watcher = channelClients[1 - via]![USERS.indexOf(user)]!;
      await watcher.join(`task:${id}`, { last_seq: 0 });
      watchers.set(id, watcher);
    }
    return ids;
  }

  /** Every watcher of each task and every feed of its user got each of its events exactly once. */
  async function expectEveryEventOnce(ids: string[]): Promise<void> {
    const rows = (await db('tasks').whereIn('id', ids).select('id', 'last_seq', 'completed_at')) as Array<{
      id: string;
      last_seq: number;
      completed_at: Date;
    }>;
    const complete = () =>
      rows.every(
        (r) =>
          exactlyOnce(watchers.get(r.id)!.byTopic.get(`task:${r.id}`) ?? [], r.id, r.last_seq) &&
          feeds
            .get(owners.get(r.id)!)!
            .every((f) => exactlyOnce(f.byTopic.get(`tasks:${owners.get(r.id)}`)!, r.id, r.last_seq)),
      );
    await waitFor('every subscriber to have every event', complete, 60_000).catch(() => undefined);
    const faults: string[] = [];
    let lag = 0;
    for (const r of rows) {
      const got = watchers.get(r.id)!.byTopic.get(`task:${r.id}`) ?? [];
      if (!exactlyOnce(got, r.id, r.last_seq))
        faults.push(`task:${r.id} got ${got.map((g) => g.seq).join(',')} of ${r.last_seq}`);
      else lag = Math.max(lag, got[got.length - 1]!.at - new Date(r.completed_at).getTime());
      for (const [i, f] of feeds.get(owners.get(r.id)!)!.entries()) {
        const fg = (f.byTopic.get(`tasks:${owners.get(r.id)}`) ?? []).filter((g) => g.taskId === r.id);
        if (!exactlyOnce(fg, r.id, r.last_seq))
          faults.push(`feed ${i} of ${r.id} got ${fg.map((g) => g.seq).join(',')} of ${r.last_seq}`);
      }
    }
    console.log(`figures: ${rows.length} tasks, slowest final event to its task subscriber: ${lag} ms after commit`);
    expect(faults).toEqual([]);
  }

  /** Fail naming what a dead process said last. */
  async function expectAlive(): Promise<void> {
    for (const [i, p] of procs.entries()) {
      const state = await Promise.race([p.exited.then((c) => `exited (${c})`), Promise.resolve('alive')]);
      if (state !== 'alive') {
        const last = [
          ...p.stderr.slice(-15),
          ...p.logs
            .filter((l) => Number(l.level) >= 50)
            .slice(-5)
            .map((l) => JSON.stringify(l)),
        ];
        throw new Error(`gateway process ${i} ${state}:\n${last.join('\n')}`);
      }
    }
  }

  async function waitAllFinal(ids: string[], timeoutMs: number): Promise<number> {
    const t0 = Date.now();
    await waitFor(
      'every task to be final',
      async () => {
        const open = await db('tasks')
          .whereIn('id', ids)
          .whereNotIn('status', ['succeeded', 'failed', 'canceled'])
          .count({ n: '*' });
        return Number(open[0]!.n) === 0;
      },
      timeoutMs,
    );
    return Date.now() - t0;
  }

  it('a 10 s stop: processes and sockets live, REST 503 with Retry-After, /readyz 503 then 200, 40/40 final, every event once', async () => {
    const ids = await createTasks(40, 'outage');
    await waitFor(
      'tasks to be running',
      async () =>
        Number((await db('tasks').whereIn('id', ids).where({ status: 'processing' }).count({ n: '*' }))[0]!.n) >= 10,
      60_000,
    );

    pg.stop();
    const stoppedAt = Date.now();
    procs.forEach(
      (p, i) =>
        void p.exited.then((c) => console.log(`gateway process ${i} exited (${c}): ${p.stderr.slice(-30).join('\n')}`)),
    );
    const rest: Array<{ status: number; ms: number; retryAfter: string | null }> = [];
    const ready: number[] = [];
    const health: number[] = [];
    const metrics: number[] = [];
    while (Date.now() - stoppedAt < 10_000) {
      await Promise.all(
        procs.map(async (p, i) => {
          const probe = async (url: string, init?: Parameters<typeof call>[1]) => {
            const t = Date.now();
            const res = await call(url, init);
            rest.push({ status: res.status, ms: Date.now() - t, retryAfter: res.headers.get('retry-after') });
          };
          await expectAlive();
          await Promise.all([
            probe(`${p.url}/api/tasks/${ids[i]}`, { token: TOKENS[owners.get(ids[i]!)!] }),
            probe(`${p.url}/api/tasks`, { token: TOKENS.alice }),
            probe(`${p.url}/api/tasks`, {
              token: TOKENS.alice,
              body: { input_data: { type: 'image', prompt: 'during' } },
            }),
            call(`${p.url}/readyz`).then((r) => ready.push(r.status)),
            call(`${p.url}/healthz`).then((r) => health.push(r.status)),
            call(`${p.url}/metrics`).then((r) => metrics.push(r.status)),
          ]);
        }),
      );
      await new Promise((r) => setTimeout(r, 250));
    }
    pg.start();
    const startedAt = Date.now();

    console.log(
      `figures: during the outage ${rest.length} REST calls, statuses ${[...new Set(rest.map((r) => r.status))].join('/')}, ` +
        `slowest ${Math.max(...rest.map((r) => r.ms))} ms; /readyz ${[...new Set(ready)].join('/')}; ` +
        `/healthz ${[...new Set(health)].join('/')}; /metrics ${[...new Set(metrics)].join('/')}`,
    );
    expect(rest.every((r) => r.status === 503 && r.retryAfter !== null)).toBe(true);
    expect(rest.every((r) => r.ms < REST_BOUND_MS)).toBe(true);
    expect(ready).toContain(503);
    expect(health.every((s) => s === 200)).toBe(true);
    expect(metrics.every((s) => s === 200)).toBe(true);

    await waitFor(
      '/readyz 200 again',
      async () => (await Promise.all(procs.map((p) => call(`${p.url}/readyz`)))).every((r) => r.status === 200),
      60_000,
    );
    console.log(`figures: /readyz 200 on both ${Date.now() - startedAt} ms after the restart`);
    const finalMs = await waitAllFinal(ids, 120_000);
    console.log(`figures: 40/40 tasks final ${finalMs + (Date.now() - startedAt - finalMs)} ms after the restart`);
    await expectEveryEventOnce(ids);
    await expectAlive();
    expect(clients.filter((c) => c.closed)).toHaveLength(0);
  }, 400_000);

  it('the bus connections (LISTEN, or Redis) killed again and again while tasks finish: every event once, the final one too', async () => {
    await expectAlive();
    const ids = await createTasks(20, 'listen');
    const killUntil = Date.now() + 10_000;
    let killed = 0;
    while (Date.now() < killUntil) {
      killed += await cutBusConnections(db);
      await new Promise((res) => setTimeout(res, 500));
    }
    console.log(`figures: ${killed} bus connections cut in 10 s`);
    expect(killed).toBeGreaterThan(0);
    await waitAllFinal(ids, 120_000);
    await expectEveryEventOnce(ids);
    await expectAlive();
    expect(clients.filter((c) => c.closed)).toHaveLength(0);
  }, 300_000);
});
