/**
 * The cluster's logic without PostgreSQL (plain `npm test`): several gateways in one process on
 * one embedded database, joined by the in-memory bus. Gateway A runs the tasks; clients watch on
 * B, so every event they get crossed the bus (a ref) and was read from the database. The bus is
 * cut while tasks run: the relay's position check (on reconnect) fills the gap. Long-poll
 * sessions are served by either gateway and handed over on a graceful stop; presence merges
 * across nodes on the bus's realtime topic.
 */
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import WebSocket from 'ws';
import { createGateway, type Gateway } from '../../src/app';
import { BusNodeLink, BusPubSubAdapter } from '../../src/bus/adapters';
import { memoryBus, MemoryBusHub } from '../../src/bus/open';
import { silentLogger } from '../../src/log';
import type { Standin } from '../../src/providers/replicate/standin';
import { Presence, RealtimeServer, type RealtimeLogger } from '../../src/realtime';
import {
  expectCleanSequence,
  fastStandin,
  joinRecording,
  phoenixSocket,
  standinEnv,
  type Received,
} from '../channels/helpers';
import { freshDb, type TestDb } from '../helpers/db';
import { call, testConfig } from '../helpers/gateway';
import { waitFor } from '../helpers/wait';

const LONGPOLL_SECRET = 'one long-poll key for the whole test cluster, 32+';

describe('gateways in one process on the in-memory bus', () => {
  let standin: Standin;
  let tdb: TestDb;
  let hub: MemoryBusHub;
  const gateways: Gateway[] = [];
  let a: { gw: Gateway; url: string };
  let b: { gw: Gateway; url: string };

  const start = async (runner: boolean) => {
    const gw = await createGateway({
      config: testConfig({
        ...standinEnv(standin),
        RUNNER_ENABLED: String(runner),
        LONGPOLL_SECRET,
      }),
      logger: silentLogger(),
      db: tdb.db,
      bus: memoryBus(hub, silentLogger()),
      runner: { pollIntervalMs: 50, claimIntervalMs: 100 },
    });
    gateways.push(gw);
    return { gw, url: await gw.start() };
  };

  beforeAll(async () => {
    standin = await fastStandin(8);
    tdb = await freshDb('pglite');
    hub = new MemoryBusHub();
    a = await start(true);
    b = await start(false);
  }, 60_000);
  afterAll(async () => {
    for (const gw of gateways.reverse()) await gw.close().catch(() => undefined);
    await tdb?.drop();
    await standin?.close();
  });

  const create = async (prompt: string): Promise<string> => {
    const r = await call(`${a.url}/api/tasks`, { body: { input_data: { type: 'text', prompt } } });
    expect(r.status).toBe(202);
    return r.body.task_id as string;
  };
  const lastSeq = async (id: string) => (await tdb.db('tasks').where({ id }).first()).last_seq as number;
  const final = (events: Received[]) => events.some((e) => e.event === 'text_response');

  it('/readyz reports the bus and each of its topics (B runs no tasks: it hears no new work)', async () => {
    const r = await call(`${a.url}/readyz`);
    expect(r.status).toBe(200);
    expect(r.body).toMatchObject({
      bus: 'ok',
      bus_engine: 'memory',
      bus_channels: { events: 'ok', new_work: 'ok', realtime: 'ok', longpoll: 'ok' },
    });
    expect((await call(`${b.url}/readyz`)).body.bus_channels).toEqual({ events: 'ok', realtime: 'ok', longpoll: 'ok' });
  });

  it('a task run by A reaches task and feed subscribers on B, each event once, in order', async () => {
    const socket = phoenixSocket(b.url);
    try {
      const feed = joinRecording(socket, 'tasks:local');
      await feed.joined;
      const id = await create('across the bus');
      const task = joinRecording(socket, `task:${id}`, { last_seq: 0 });
      await task.joined;
      await waitFor('final event on B', () => final(task.events) && final(feed.events), 30_000);
      expectCleanSequence(task.events, id);
      expect(task.events).toHaveLength(await lastSeq(id));
      expect(b.gw.runner.activeCount).toBe(0);
    } finally {
      socket.disconnect();
    }
  }, 60_000);

  it('the bus cut while tasks run: the position check on reconnect fills what B missed, once', async () => {
    const socket = phoenixSocket(b.url);
    try {
      const feed = joinRecording(socket, 'tasks:local');
      await feed.joined;
      const ids = [await create('cut 1'), await create('cut 2'), await create('cut 3')];
      const watched = new Map<string, Received[]>();
      for (const id of ids) {
        const ch = joinRecording(socket, `task:${id}`, { last_seq: 0 });
        await ch.joined;
        watched.set(id, ch.events);
      }
      const checksBefore = b.gw.relay.stats.checks;
      hub.disconnectAll();
      expect((await call(`${b.url}/readyz`)).body).toMatchObject({
        bus: 'reconnecting',
        bus_channels: { events: 'reconnecting' },
      });
      await waitFor(
        'every task final while the bus is down',
        async () =>
          (await tdb.db('tasks').whereIn('id', ids).whereNotIn('status', ['succeeded', 'failed'])).length === 0,
        30_000,
      );
      // No ref crossed meanwhile: what B delivered came from its periodic position check (every 5 s)
      // or comes from the check its reconnect runs.
      const missing = async () => {
        let n = 0;
        for (const id of ids) n += (await lastSeq(id)) - watched.get(id)!.length;
        return n;
      };
      hub.reconnectAll();
      await waitFor('every event on B', async () => (await missing()) === 0, 15_000);
      expect(b.gw.relay.stats.checks).toBeGreaterThan(checksBefore);
      expect(b.gw.relay.stats.recovered).toBeGreaterThan(0);
      // A marker task after: anything still on its way from before (a duplicate) would come first.
      const marker = await create('marker');
      await waitFor(
        'the marker on the feed',
        () => feed.events.some((e) => e.payload.task_id === marker && e.event === 'text_response'),
        30_000,
      );
      for (const id of ids) {
        expectCleanSequence(watched.get(id)!, id);
        const seqs = feed.events.filter((e) => e.payload.task_id === id).map((e) => e.payload.seq);
        expect(seqs).toEqual(Array.from({ length: await lastSeq(id) }, (_, i) => i + 1));
      }
    } finally {
      socket.disconnect();
    }
  }, 90_000);

  it('a long-poll session made on A is served through B, and handed over to B when A stops', async () => {
    const lp = (url: string) => `${url}/socket/longpoll?vsn=2.0.0`;
    const get = async (url: string, token?: string) =>
      (await (await fetch(lp(url), { headers: token ? { 'x-phoenix-longpoll-token': token } : {} })).json()) as {
        status: number;
        token: string;
        messages: string[];
      };
    const post = async (url: string, token: string, frames: unknown[]) =>
      (
        await fetch(lp(url), {
          method: 'POST',
          headers: { 'content-type': 'application/x-ndjson', 'x-phoenix-longpoll-token': token },
          body: frames.map((f) => JSON.stringify(f)).join('\n'),
        })
      ).status;
    // A third gateway to stop (A runs the tasks and stays).
    const c = await start(false);
    const opened = await get(c.url);
    expect(opened.status).toBe(410);
    const token = opened.token;
    expect(token.startsWith(`${c.gw.bus!.nodeId}.`)).toBe(true);
    const id = await create('long-poll');
    expect(await post(b.url, token, [['1', '1', `task:${id}`, 'phx_join', { last_seq: 0 }]])).toBe(200);
    const got: unknown[][] = [];
    let current = token;
    const pollUntil = async (url: string, done: () => boolean) => {
      while (!done()) {
        const r = await get(url, current);
        if (r.status === 410) throw new Error('the session was lost');
        current = r.token;
        for (const m of r.messages) got.push(JSON.parse(m));
      }
    };
    await pollUntil(b.url, () => got.some((m) => m[3] === 'phx_reply'));
    expect(got[0]).toEqual(['1', '1', `task:${id}`, 'phx_reply', expect.objectContaining({ status: 'ok' })]);
    // C stops gracefully: its session moves to a live gateway, the channel rejoined there.
    await c.gw.close();
    expect(c.gw.realtime.stats().transports.longpoll!.sessions).toBe(0);
    expect(
      a.gw.realtime.stats().transports.longpoll!.sessions + b.gw.realtime.stats().transports.longpoll!.sessions,
    ).toBe(1);
    await pollUntil(b.url, () => got.some((m) => m[3] === 'text_response'));
    const seqs = got.filter((m) => m[3] !== 'phx_reply').map((m) => (m[4] as { seq: number }).seq);
    expect(seqs).toEqual(Array.from({ length: await lastSeq(id) }, (_, i) => i + 1));
  }, 60_000);

  it('presence on two realtime nodes of the bus: one merged state', async () => {
    const nodes = await Promise.all(
      ['n1', 'n2'].map(async (label) => {
        const bus = memoryBus(hub, silentLogger());
        const rt = new RealtimeServer({ pubsub: new BusPubSubAdapter(bus), checkOrigin: false });
        const presence = new Presence(rt, { heartbeatMs: 200, expireMs: 1000 });
        rt.channel('room:*', {
          join(_topic, payload, socket) {
            presence.track(socket, (payload as { user: string }).user, { node: label });
            presence.pushState(socket);
            return { status: 'ok', response: {} };
          },
        });
        const server = http.createServer();
        rt.attach(server);
        await bus.start();
        await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
        return {
          bus,
          rt,
          presence,
          server,
          url: `ws://127.0.0.1:${(server.address() as AddressInfo).port}/socket/websocket?vsn=2.0.0`,
        };
      }),
    );
    const sockets: WebSocket[] = [];
    try {
      const frames: unknown[][][] = [[], []];
      for (const [i, n] of nodes.entries()) {
        const ws = new WebSocket(n.url);
        sockets.push(ws);
        ws.on('message', (d: Buffer) => frames[i]!.push(JSON.parse(d.toString())));
        await new Promise((r) => ws.once('open', r));
        ws.send(JSON.stringify(['1', '1', 'room:lobby', 'phx_join', { user: `u${i + 1}` }]));
      }
      // The first joiner hears of the second through a presence_diff that crossed the bus.
      await waitFor(
        'u2 seen on n1',
        () => frames[0]!.some((f) => f[3] === 'presence_diff' && JSON.stringify(f[4]).includes('"u2"')),
        10_000,
      );
      // A node that leaves the bus (kill -9) is forgotten by the other after expireMs.
      sockets[1]!.terminate();
      await waitFor(
        'u2 leaves n1',
        () =>
          frames[0]!.some(
            (f) => f[3] === 'presence_diff' && JSON.stringify((f[4] as { leaves: unknown }).leaves).includes('"u2"'),
          ),
        10_000,
      );
    } finally {
      for (const s of sockets) s.terminate();
      for (const n of nodes) {
        n.presence.close();
        await n.rt.close();
        await n.bus.close();
        await new Promise((r) => n.server.close(r));
      }
    }
  }, 30_000);
});

describe('long-poll nodes stopping together on the in-memory bus (issue 23 item 4)', () => {
  const SECRET = 'the long-poll key of the stopping-together test, 32+';
  interface LpNode {
    name: string;
    bus: ReturnType<typeof memoryBus>;
    rt: RealtimeServer;
    server: http.Server;
    url: string;
    lines: { level: string; obj: Record<string, unknown>; msg?: string }[];
  }
  let hub: MemoryBusHub;
  let nodes: LpNode[];

  const lpNode = async (name: string): Promise<LpNode> => {
    const bus = memoryBus(hub, silentLogger());
    const lines: LpNode['lines'] = [];
    const at = (level: string) => (obj: object, msg?: string) => {
      lines.push({ level, obj: obj as Record<string, unknown>, msg });
    };
    const logger: RealtimeLogger = { debug: at('debug'), info: at('info'), warn: at('warn'), error: at('error') };
    const rt = new RealtimeServer({
      checkOrigin: false,
      logger,
      logLimit: false,
      longpoll: { windowMs: 2000, secret: SECRET, bus: new BusNodeLink(bus), busTimeoutMs: 500 },
    });
    rt.channel('room:*', { join: () => ({ status: 'ok', response: {} }) });
    const server = http.createServer((req, res) => {
      if (!rt.handleHttp(req, res)) res.writeHead(404).end();
    });
    await bus.start();
    await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
    const url = `http://127.0.0.1:${(server.address() as AddressInfo).port}/socket/longpoll?vsn=2.0.0`;
    return { name, bus, rt, server, url, lines };
  };
  const get = async (n: LpNode, token?: string) =>
    (await (await fetch(n.url, { headers: token ? { 'x-phoenix-longpoll-token': token } : {} })).json()) as {
      status: number;
      token?: string;
    };
  /** Opens `count` sessions on `n`, each with a poll held: what each held poll is answered. */
  const sessionsOn = async (n: LpNode, count: number) => {
    const held: Promise<{ status: number; token?: string }>[] = [];
    for (let i = 0; i < count; i++) held.push(get(n, (await get(n)).token));
    return held;
  };
  const handedLine = (n: LpNode) => n.lines.find((l) => l.msg?.startsWith('realtime: handed '));
  const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

  beforeEach(async () => {
    hub = new MemoryBusHub();
    nodes = [await lpNode('a'), await lpNode('b'), await lpNode('c')];
  });
  afterEach(async () => {
    for (const n of nodes) {
      await n.rt.close();
      await n.bus.close();
      n.server.closeAllConnections();
      await new Promise((r) => n.server.close(r));
    }
  });

  it('two stop together, one stays: every session goes to the one that stays, and each line counts only those', async () => {
    const [a, b, c] = nodes as [LpNode, LpNode, LpNode];
    const heldA = await sessionsOn(a, 4);
    const heldB = await sessionsOn(b, 2);
    await sleep(50); // the polls are held
    // A asks who is up; B answers (it is not stopping yet), then B stops too while A waits for more answers.
    const drainA = a.rt.drain({ intervalMs: 0 });
    await sleep(60);
    const drainB = b.rt.drain({ intervalMs: 0 });
    await Promise.all([drainA, drainB]);
    for (const answered of await Promise.all([...heldA, ...heldB])) {
      expect(answered).toEqual({
        status: 204,
        token: expect.stringMatching(new RegExp(`^${c.bus.nodeId}\\.`)),
        messages: [],
      });
    }
    expect(c.rt.stats().transports.longpoll!.sessions).toBe(6);
    expect(a.rt.stats().transports.longpoll!.sessions + b.rt.stats().transports.longpoll!.sessions).toBe(0);
    expect(handedLine(a)?.msg).toBe('realtime: handed 4 long-poll session(s) to 1 live node(s)');
    expect(handedLine(a)?.obj).toMatchObject({ sessions: 4, nodes: { [c.bus.nodeId]: 4 }, unconfirmed: 0, ended: 0 });
    expect(handedLine(b)?.msg).toBe('realtime: handed 2 long-poll session(s) to 1 live node(s)');
    // No stopping node was handed a session it then dropped.
    expect(b.lines.filter((l) => l.level === 'warn')).toEqual([]);
  }, 30_000);

  it('all three stop together: nothing is counted as handed, the sessions with no live node say so', async () => {
    const [a, b, c] = nodes as [LpNode, LpNode, LpNode];
    const held = await sessionsOn(a, 3);
    await sleep(50);
    // A asks first; B and C answer, then stop before A hands anything over.
    const drainA = a.rt.drain({ intervalMs: 0 });
    await sleep(60);
    await Promise.all([drainA, b.rt.drain({ intervalMs: 0 }), c.rt.drain({ intervalMs: 0 })]);
    // Their clients learn the session is gone (phoenix.js reconnects), rather than being sent to a stopping node.
    for (const answered of await Promise.all(held)) expect(answered).toEqual({ status: 410 });
    expect(handedLine(a)?.msg).toBe(
      'realtime: handed 0 long-poll session(s) to 0 live node(s); 3 had no live node to go to and ended',
    );
    expect(handedLine(a)?.obj).toMatchObject({ sessions: 0, ended: 3 });
    for (const n of [b, c]) expect(n.rt.stats().transports.longpoll!.sessions).toBe(0);
  }, 30_000);
});
