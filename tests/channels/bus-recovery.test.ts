import { TokenSigner } from '../../src/auth/tokens';
import type { Standin } from '../../src/providers/replicate/standin';
import { cutBusConnections, listenConnections, TEST_BUS } from '../helpers/bus';
import { BACKENDS, TEST_PG_URL, type TestDb } from '../helpers/db';
import { call, startGateway, TEST_SECRET, type TestGateway } from '../helpers/gateway';
import {
  fastStandin,
  joinRecording,
  phoenixSocket,
  standinEnv,
  waitFor,
  startFrontAndWorker,
  type Received,
} from './helpers';

const signer = new TokenSigner(TEST_SECRET);
const alice = signer.mint('alice');

const seqsOf = (events: Received[], id: string) =>
  events.filter((e) => e.payload.task_id === id).map((e) => e.payload.seq);
const oneToN = (n: number) => Array.from({ length: n }, (_, i) => i + 1);

/**
 * "Nothing more arrives": a task created after, whose final event the feed `events` must see. Its
 * events come after anything still on its way from before (one process's events and refs keep
 * their order on the bus, and the relay reads refs in order), so a late duplicate lands first.
 */
async function markerTask(url: string, events: Received[]): Promise<void> {
  const r = await call(`${url}/api/tasks`, { token: alice, body: { input_data: { type: 'text', prompt: 'marker' } } });
  const id = r.body.task_id as string;
  await waitFor(
    'the marker task on the feed',
    () => events.some((e) => e.payload.task_id === id && e.event === 'text_response'),
    30_000,
  );
}

describe.each(BACKENDS)('tasks:<user_id> feed replay on %s', (backend) => {
  let standin: Standin;
  let t: TestGateway;
  beforeAll(async () => {
    standin = await fastStandin();
    t = await startGateway(backend, { auth: true, env: standinEnv(standin) });
  });
  afterAll(async () => {
    await t?.close();
    await standin?.close();
  });

  it('join with {since: cursor} replays the events after it, each once, then live ones', async () => {
    const socket = phoenixSocket(t.url, alice);
    try {
      const live = joinRecording(socket, 'tasks:alice');
      await live.joined;
      const created = await call(`${t.url}/api/tasks`, {
        token: alice,
        body: { input_data: { type: 'text', prompt: 'feed replay' } },
      });
      const id = created.body.task_id as string;
      await waitFor('text_response', () => live.events.find((e) => e.event === 'text_response'), 30_000);
      const lastSeq = (await t.gw.db('tasks').where({ id }).first()).last_seq as number;
      expect(seqsOf(live.events, id)).toEqual(oneToN(lastSeq));
      expect(live.events.every((e) => typeof e.payload.cursor === 'string')).toBe(true);

      // A second join from the second event's cursor gets events 3..last, once each.
      const other = phoenixSocket(t.url, alice);
      try {
        const since = live.events.find((e) => e.payload.seq === 2)!.payload.cursor;
        const replay = joinRecording(other, 'tasks:alice', { since });
        await replay.joined;
        await waitFor('replayed text_response', () => replay.events.find((e) => e.event === 'text_response'), 10_000);
        await markerTask(t.url, replay.events);
        expect(seqsOf(replay.events, id)).toEqual(oneToN(lastSeq).slice(2));
      } finally {
        other.disconnect();
      }
    } finally {
      socket.disconnect();
    }
  }, 60_000);

  it('refuses a malformed since with a reason', async () => {
    const socket = phoenixSocket(t.url, alice);
    try {
      for (const since of ['yesterday', 42, { a: 1 }]) {
        const { channel, joined } = joinRecording(socket, 'tasks:alice', { since });
        await expect(joined).rejects.toMatchObject({ response: { reason: expect.stringMatching(/invalid since/) } });
        // phoenix.js rejoins a refused channel after 1 s, and that rejoin leaves whatever newer channel
        // is joining the same topic (its join then never settles): stop it before the next join.
        channel.leave();
      }
    } finally {
      socket.disconnect();
    }
  });
});

(TEST_PG_URL ? describe : describe.skip)('the bus drops: the position check delivers what was missed', () => {
  let standin: Standin;
  let tdb: TestDb;
  let front: TestGateway;
  let pair: Awaited<ReturnType<typeof startFrontAndWorker>> | undefined;

  beforeAll(async () => {
    standin = await fastStandin(2);
    pair = await startFrontAndWorker(standin);
    ({ tdb, front } = pair);
  }, 120_000);
  afterAll(async () => {
    await pair?.close();
    await standin?.close();
  });

  it('bus connections cut again and again while tasks finish on the other process: task and feed subscribers get every event once', async () => {
    const socket = phoenixSocket(front.url, alice);
    try {
      const feed = joinRecording(socket, 'tasks:alice');
      await feed.joined;
      const ids: string[] = [];
      const watched = new Map<string, Received[]>();
      for (let i = 0; i < 6; i++) {
        const r = await call(`${front.url}/api/tasks`, {
          token: alice,
          body: { input_data: { type: i % 2 ? 'image' : 'text', prompt: `bus ${i}` } },
        });
        ids.push(r.body.task_id);
        const ch = joinRecording(socket, `task:${r.body.task_id}`, { last_seq: 0 });
        await ch.joined;
        watched.set(r.body.task_id, ch.events);
      }
      // One LISTEN connection per process on NOTIFY (show the query: listenConnections); none on Redis.
      expect(await listenConnections(tdb.db, tdb.schema!)).toBe(TEST_BUS === 'redis' ? 0 : 2);
      // Cut this schema's bus connections (both processes') every 200 ms until every task is final.
      let kills = 0;
      await waitFor(
        'every task final',
        async () => {
          kills += await cutBusConnections(tdb.db, tdb.schema!);
          const open = await tdb
            .db('tasks')
            .whereIn('id', ids)
            .whereNotIn('status', ['succeeded', 'failed', 'canceled']);
          await new Promise((r) => setTimeout(r, 200));
          return open.length === 0;
        },
        90_000,
      );
      expect(kills).toBeGreaterThan(0);
      const rows = await tdb.db('tasks').whereIn('id', ids).select('id', 'last_seq');
      await waitFor(
        'every event delivered',
        () =>
          rows.every((r) => watched.get(r.id)!.length >= r.last_seq && seqsOf(feed.events, r.id).length >= r.last_seq),
        30_000,
      );
      await markerTask(front.url, feed.events);
      for (const r of rows) {
        expect(seqsOf(watched.get(r.id)!, r.id)).toEqual(oneToN(r.last_seq));
        expect(seqsOf(feed.events, r.id)).toEqual(oneToN(r.last_seq));
      }
      expect(front.gw.relay.stats.checks).toBeGreaterThan(0);
    } finally {
      socket.disconnect();
    }
  }, 180_000);
});
