import WebSocket from 'ws';
import { TokenSigner } from '../../src/auth/tokens';
import type { Standin } from '../../src/providers/replicate/standin';
import { TEST_PG_URL } from '../helpers/db';
import { call, TEST_SECRET, type TestGateway } from '../helpers/gateway';
import {
  expectCleanSequence,
  fastStandin,
  joinRecording,
  phoenixSocket,
  waitFor,
  startFrontAndWorker,
} from './helpers';

const signer = new TokenSigner(TEST_SECRET);
const alice = signer.mint('alice');

(TEST_PG_URL ? describe : describe.skip)('two gateway processes on one PostgreSQL', () => {
  let standin: Standin;
  let front: TestGateway;
  let pair: Awaited<ReturnType<typeof startFrontAndWorker>> | undefined;

  beforeAll(async () => {
    standin = await fastStandin();
    pair = await startFrontAndWorker(standin);
    front = pair.front;
  }, 120_000);
  afterAll(async () => {
    await pair?.close();
    await standin?.close();
  });

  it('a client on the first gets every event of a task run by the second', async () => {
    const created = await call(`${front.url}/api/tasks`, {
      token: alice,
      body: { input_data: { type: 'text', prompt: 'across' } },
    });
    const id = created.body.task_id;
    const socket = phoenixSocket(front.url, alice);
    try {
      const { events, joined } = joinRecording(socket, `task:${id}`, { last_seq: 0 });
      await joined;
      await waitFor('text_response', () => events.find((e) => e.event === 'text_response'), 30_000);
      expectCleanSequence(events, id);
      const row = await front.gw.db('tasks').where({ id }).first();
      expect(row.lease_owner).toBeNull();
      expect(row.status).toBe('succeeded');
      expect(events.length).toBe(row.last_seq);
      // The runner that ran it is the other process's.
      expect(front.gw.runner.activeCount).toBe(0);
      const text = events
        .filter((e) => e.event === 'text_delta')
        .map((e) => e.payload.delta)
        .join('');
      expect(text).toBe(events[events.length - 1]!.payload.output.text);
    } finally {
      socket.disconnect();
    }
  });

  it('the front reads only the events of tasks watched on it, each notification batch in one query', async () => {
    const create = async (prompt: string) =>
      (await call(`${front.url}/api/tasks`, { token: alice, body: { input_data: { type: 'text', prompt } } })).body
        .task_id as string;
    const socket = phoenixSocket(front.url, alice);
    const reads = { ...front.gw.relay.stats };
    const queries: string[] = [];
    const onQuery = (q: { sql: string }) => {
      if (/from "?task_events"?/i.test(q.sql)) queries.push(q.sql);
    };
    front.gw.db.on('query', onQuery);
    try {
      // Three tasks watched here, three nobody here watches, all streaming at once.
      const watched = await Promise.all([1, 2, 3].map((i) => create(`watched ${i}`)));
      const unwatched = await Promise.all([1, 2, 3].map((i) => create(`unwatched ${i}`)));
      const recorded = watched.map((id) => joinRecording(socket, `task:${id}`, { last_seq: 0 }));
      await Promise.all(recorded.map((r) => r.joined));
      for (const r of recorded)
        await waitFor('text_response', () => r.events.find((e) => e.event === 'text_response'), 30_000);
      for (const [i, r] of recorded.entries()) expectCleanSequence(r.events, watched[i]!);
      await waitFor(
        'the unwatched tasks to end',
        async () =>
          (await front.gw.db('tasks').whereIn('id', unwatched).whereNot({ status: 'succeeded' }).count({ n: '*' }))[0]!
            .n == 0,
        30_000,
      );
      await front.gw.relay.idle();
      const s = front.gw.relay.stats;
      const lastSeqs = (await front.gw.db('tasks').whereIn('id', watched).select('last_seq')).map((r) =>
        Number(r.last_seq),
      );
      // Events read from the log: at most those of the watched tasks (their joins replay through
      // the channel, not the relay), never one of the others.
      expect(s.eventsRead - reads.eventsRead).toBeGreaterThan(0);
      expect(s.eventsRead - reads.eventsRead).toBeLessThanOrEqual(lastSeqs.reduce((a, b) => a + b, 0));
      // A read per notification batch at most (and per position check that found something behind).
      expect(s.reads - reads.reads).toBeLessThanOrEqual(s.batches - reads.batches + (s.checks - reads.checks));
      // The batch reads name several tasks in one statement.
      expect(queries.some((q) => /unnest/i.test(q))).toBe(true);
    } finally {
      front.gw.db.off('query', onQuery);
      socket.disconnect();
    }
  });

  it('a thousand clients joined to one task each receive all of its events, in order', async () => {
    const created = await call(`${front.url}/api/tasks`, {
      token: alice,
      body: { input_data: { type: 'image', prompt: 'crowd', model: 'bytedance/seedream-3' } },
    });
    const id = created.body.task_id;
    const topic = `task:${id}`;
    const N = 1000;
    const received: number[][] = Array.from({ length: N }, () => []);
    const clients: WebSocket[] = [];
    const wsUrl = `${front.url.replace('http', 'ws')}/socket/websocket?vsn=2.0.0&token=${encodeURIComponent(alice)}`;
    try {
      let joinedCount = 0;
      for (let i = 0; i < N; i++) {
        const ws = new WebSocket(wsUrl, { perMessageDeflate: false });
        clients.push(ws);
        ws.on('message', (data: Buffer) => {
          const [, ref, t, event, payload] = JSON.parse(data.toString());
          if (t !== topic) return;
          if (event === 'phx_reply' && ref === '1' && payload.status === 'ok') joinedCount++;
          else if (typeof payload?.seq === 'number') received[i]!.push(payload.seq);
        });
        ws.on('open', () => ws.send(JSON.stringify(['1', '1', topic, 'phx_join', { last_seq: 0 }])));
        ws.on('error', () => undefined);
      }
      await waitFor('all joins', () => joinedCount === N, 60_000);
      await waitFor(
        'task end',
        async () => (await front.gw.db('tasks').where({ id }).first()).status === 'succeeded',
        60_000,
      );
      const { last_seq: lastSeq } = await front.gw.db('tasks').where({ id }).first();
      const expected = Array.from({ length: lastSeq }, (_, i) => i + 1);
      await waitFor('every client to get every event', () => received.every((r) => r.length >= lastSeq), 30_000);
      for (const r of received) expect(r).toEqual(expected);
    } finally {
      for (const ws of clients) ws.terminate();
    }
  }, 180_000);
});
