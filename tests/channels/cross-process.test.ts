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
