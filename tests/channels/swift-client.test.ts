import fs from 'node:fs';
import path from 'node:path';
import WebSocket from 'ws';
import { TokenSigner } from '../../src/auth/tokens';
import type { Standin } from '../../src/providers/replicate/standin';
import { BACKENDS } from '../helpers/db';
import { call, startGateway, TEST_SECRET, type TestGateway } from '../helpers/gateway';
import { fastStandin, standinEnv, waitFor } from './helpers';

const fixture = JSON.parse(
  fs.readFileSync(path.join(__dirname, '..', 'fixtures', 'swift', 'swift-phoenix-client-5.3.4.json'), 'utf8'),
);
const session = fixture.frames_out.session.frames as Array<{ dir: string; text: string; json: unknown[] }>;
const outFrames = session.filter((f) => f.dir === 'out');
const TOPIC = outFrames[0]!.json[2] as string;
const TASK_ID = TOPIC.slice('task:'.length);

/** A raw socket that records parsed frames. */
async function rawSocket(url: string): Promise<{ ws: WebSocket; frames: any[] }> {
  const ws = new WebSocket(url, { perMessageDeflate: false });
  const frames: any[] = [];
  ws.on('message', (d: Buffer) => frames.push(JSON.parse(d.toString())));
  await new Promise((resolve, reject) => {
    ws.once('open', resolve);
    ws.once('unexpected-response', (_q, r) => reject(new Error(`status ${r.statusCode}`)));
  });
  return { ws, frames };
}

describe.each(BACKENDS)('SwiftPhoenixClient 5.3.4 frames against the task channel on %s', (backend) => {
  let standin: Standin;
  let t: TestGateway;
  const token = new TokenSigner(TEST_SECRET).mint('ios-user');

  beforeAll(async () => {
    standin = await fastStandin();
    t = await startGateway(backend, { auth: true, env: standinEnv(standin) });
    (t.gw.runner as any).opts.pollIntervalMs = 100;
  });
  afterAll(async () => {
    await t.close();
    await standin.close();
  });

  /** The socket URL as Swift builds it: vsn first, then the flat params. */
  const swiftUrl = (tok: string) =>
    `${t.url.replace('http', 'ws')}/socket/websocket?vsn=2.0.0&token=${encodeURIComponent(tok)}`;

  it('replays the recorded session byte for byte: join, image_generate, events, heartbeat, leave', async () => {
    // vsn first, then flat params, as Swift builds the URL.
    const { ws, frames } = await rawSocket(`${swiftUrl(token)}&device=ios`);
    try {
      const [join, generate, heartbeat, leave] = outFrames.map((f) => f.text);
      expect(generate).toContain('google\\/imagen-4-fast');
      ws.send(join!);
      const joinReply = await waitFor(
        'join reply',
        () => frames.find((f) => f[1] === '3' && f[3] === 'phx_reply'),
        5000,
      );
      expect(joinReply).toEqual(['3', '3', TOPIC, 'phx_reply', { status: 'ok', response: { task: null } }]);

      ws.send(generate!);
      const reply = await waitFor('generate reply', () => frames.find((f) => f[1] === '4'), 5000);
      expect(reply.slice(0, 4)).toEqual(['3', '4', TOPIC, 'phx_reply']);
      expect(reply[4].status).toBe('ok');
      expect(reply[4].response.task_id).toBe(TASK_ID);
      expect(reply[4].response.task.model).toBe('google/imagen-4-fast');

      const final = await waitFor('image_response', () => frames.find((f) => f[3] === 'image_response'), 30_000);
      const pushes = frames.filter((f) => f[2] === TOPIC && f[3] !== 'phx_reply');
      // Server pushes: [join_ref, null, topic, event, payload] with string join_ref, every payload an object naming the task.
      for (const p of pushes) {
        expect(p[0]).toBe('3');
        expect(p[1]).toBeNull();
        expect(p[4].task_id).toBe(TASK_ID);
      }
      expect(pushes.map((p) => p[4].seq)).toEqual(pushes.map((_p, i) => i + 1));
      expect(final[4]).toMatchObject({ status: 'success', task_id: TASK_ID });

      ws.send(heartbeat!);
      const hb = await waitFor('heartbeat reply', () => frames.find((f) => f[2] === 'phoenix'), 5000);
      expect(hb).toEqual([null, '5', 'phoenix', 'phx_reply', { status: 'ok', response: {} }]);

      ws.send(leave!);
      const left = await waitFor('leave reply', () => frames.find((f) => f[1] === '6'), 5000);
      expect(left).toEqual(['3', '6', TOPIC, 'phx_reply', { status: 'ok', response: {} }]);
      expect(await t.gw.db('tasks').where({ id: TASK_ID })).toHaveLength(1);
    } finally {
      ws.terminate();
    }
  });

  it('older Swift builds (serializer v1, JSON objects) create and follow a task too', async () => {
    const created = await call(`${t.url}/api/tasks`, {
      token,
      body: { input_data: { type: 'image', prompt: 'v1 client' } },
    });
    const topic = `task:${created.body.task_id}`;
    const { ws, frames } = await rawSocket(
      `${t.url.replace('http', 'ws')}/socket/websocket?token=${encodeURIComponent(token)}`,
    );
    try {
      ws.send(JSON.stringify({ topic, event: 'phx_join', payload: { last_seq: 0 }, ref: '1', join_ref: '1' }));
      const joinReply = await waitFor('v1 join reply', () => frames.find((f) => f.ref === '1'), 5000);
      expect(joinReply).toMatchObject({ topic, event: 'phx_reply', payload: { status: 'ok' } });
      expect(Object.keys(joinReply).sort()).toEqual(['event', 'payload', 'ref', 'topic']);
      ws.send(
        JSON.stringify({ topic, event: 'image_generate', payload: { prompt: 'v1 client' }, ref: '2', join_ref: '1' }),
      );
      const reply = await waitFor('v1 generate reply', () => frames.find((f) => f.ref === '2'), 5000);
      expect(reply.payload.response.task_id).toBe(created.body.task_id);
      const final = await waitFor('v1 image_response', () => frames.find((f) => f.event === 'image_response'), 30_000);
      expect(final.payload.status).toBe('success');
      const events = frames.filter((f) => f.topic === topic && f.event !== 'phx_reply');
      expect(events.map((f) => f.payload.seq)).toEqual(events.map((_f, i) => i + 1));
    } finally {
      ws.terminate();
    }
  });
  it("a task id picked by Swift's UUID().uuidString (upper case) is created, answered and followed live", async () => {
    const upper = '6F9619FF-8B86-4011-B42D-00C04FC964FF';
    const topic = `task:${upper}`;
    const { ws, frames } = await rawSocket(swiftUrl(token));
    try {
      ws.send(JSON.stringify(['1', '1', topic, 'phx_join', {}]));
      const joined = await waitFor('join reply', () => frames.find((f) => f[1] === '1'), 5000);
      expect(joined[4]).toEqual({ status: 'ok', response: { task: null } });
      ws.send(
        JSON.stringify(['1', '2', topic, 'image_generate', { prompt: 'upper-case id', model: 'google/imagen-4-fast' }]),
      );
      const reply = await waitFor('generate reply', () => frames.find((f) => f[1] === '2'), 5000);
      expect(reply[4].status).toBe('ok');
      expect(reply[4].response.task_id).toBe(upper.toLowerCase());
      const final = await waitFor(
        'image_response on the upper-case topic',
        () => frames.find((f) => f[3] === 'image_response'),
        30_000,
      );
      expect(final[2]).toBe(topic);
      expect(final[4].status).toBe('success');
      const pushes = frames.filter((f) => f[2] === topic && f[3] !== 'phx_reply');
      expect(pushes.map((p) => p[4].seq)).toEqual(pushes.map((_p, i) => i + 1));
      expect(await t.gw.db('tasks').where({ id: upper.toLowerCase() })).toHaveLength(1);
    } finally {
      ws.terminate();
    }
  });

  it('a task made over REST is followed live on its upper-cased topic, and a generate of another type answers with it', async () => {
    const created = await call(`${t.url}/api/tasks`, {
      token,
      body: { input_data: { prompt: 'no type: a text task' } },
    });
    expect(created.body.data.task_type).toBe('text_gen');
    const topic = `task:${String(created.body.task_id).toUpperCase()}`;
    const tasksOfUser = async () => (await t.gw.db('tasks').where({ user_id: 'ios-user' })).length;
    const before = await tasksOfUser();
    const { ws, frames } = await rawSocket(swiftUrl(token));
    try {
      ws.send(JSON.stringify(['1', '1', topic, 'phx_join', { last_seq: 0 }]));
      await waitFor('join reply', () => frames.find((f) => f[1] === '1'), 5000);
      ws.send(
        JSON.stringify(['1', '2', topic, 'image_generate', { prompt: 'legacy push', model: 'google/imagen-4-fast' }]),
      );
      const reply = await waitFor('generate reply', () => frames.find((f) => f[1] === '2'), 5000);
      expect(reply[4]).toMatchObject({ status: 'ok', response: { task_id: created.body.task_id } });
      const final = await waitFor('text_response', () => frames.find((f) => f[3] === 'text_response'), 30_000);
      expect(final[4].status).toBe('success');
      const pushes = frames.filter((f) => f[2] === topic && f[3] !== 'phx_reply');
      expect(pushes.map((p) => p[4].seq)).toEqual(pushes.map((_p, i) => i + 1));
      expect(await tasksOfUser()).toBe(before);
    } finally {
      ws.terminate();
    }
  });

  it("a socket that joined a fresh id first never sees another user's task created on it", async () => {
    const id = '0b0b0b0b-1111-4222-8333-444455556666';
    const topic = `task:${id}`;
    const bobToken = new TokenSigner(TEST_SECRET).mint('bob');
    const bob = await rawSocket(swiftUrl(bobToken));
    const alice = await rawSocket(swiftUrl(token));
    try {
      bob.ws.send(JSON.stringify(['1', '1', topic, 'phx_join', {}]));
      expect((await waitFor('bob join', () => bob.frames.find((f) => f[1] === '1'), 5000))[4].status).toBe('ok');
      alice.ws.send(JSON.stringify(['1', '1', topic, 'phx_join', {}]));
      await waitFor('alice join', () => alice.frames.find((f) => f[1] === '1'), 5000);
      alice.ws.send(JSON.stringify(['1', '2', topic, 'text_generate', { prompt: 'private words' }]));
      await waitFor('alice text_response', () => alice.frames.find((f) => f[3] === 'text_response'), 30_000);
      const closed = await waitFor('bob phx_close', () => bob.frames.find((f) => f[3] === 'phx_close'), 5000);
      expect(closed[2]).toBe(topic);
      expect(bob.frames.filter((f) => f[2] === topic && !['phx_reply', 'phx_close'].includes(f[3]))).toEqual([]);
    } finally {
      bob.ws.terminate();
      alice.ws.terminate();
    }
  });
});
