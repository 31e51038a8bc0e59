import type { Socket } from 'phoenix';
import WebSocket from 'ws';
import { TokenSigner } from '../../src/auth/tokens';
import type { Standin } from '../../src/providers/replicate/standin';
import { BACKENDS } from '../helpers/db';
import { call, startGateway, TEST_SECRET, type TestGateway } from '../helpers/gateway';
import { expectCleanSequence, fastStandin, joinRecording, phoenixSocket, push, standinEnv, waitFor } from './helpers';

const signer = new TokenSigner(TEST_SECRET);
const alice = signer.mint('alice');
const bob = signer.mint('bob');

describe.each(BACKENDS)('the task channel on %s', (backend) => {
  let standin: Standin;
  let t: TestGateway;
  const sockets: Socket[] = [];
  const connect = (token: string) => {
    const s = phoenixSocket(t.url, token);
    sockets.push(s);
    return s;
  };

  beforeAll(async () => {
    standin = await fastStandin();
    t = await startGateway(backend, { auth: true, env: standinEnv(standin) });
    (t.gw.runner as any).opts.pollIntervalMs = 100;
  });
  afterEach(() => {
    for (const s of sockets.splice(0)) s.disconnect();
  });
  afterAll(async () => {
    await t.close();
    await standin.close();
  });

  const countTasks = async (user: string) => (await t.gw.db('tasks').where({ user_id: user })).length;

  /**
   * "Nothing more arrives" made able to fail: a marker sent after, and waited for. The marker is
   * a task created now, seen on Alice's feed joined on `socket`; the relay delivers events in
   * commit order and a socket keeps its order, so whatever the relay was still to deliver of the
   * tasks before (a late duplicate) has reached `socket` once the marker has. (It is cancelled
   * at once, so it takes no runner slot from the next test.)
   */
  async function afterMarker(socket: Socket, joinedFeed?: ReturnType<typeof joinRecording>): Promise<void> {
    // A second join of the feed on the same socket would end the first (a duplicate join): reuse it.
    const feed = joinedFeed ?? joinRecording(socket, 'tasks:alice');
    await feed.joined;
    const marker = await call(`${t.url}/api/tasks`, {
      token: alice,
      body: { input_data: { type: 'image', prompt: 'marker' } },
    });
    const id = marker.body.task_id;
    await waitFor('the marker on the feed', () => feed.events.some((e) => e.payload.task_id === id), 30_000);
    if (!joinedFeed) await new Promise((r) => feed.channel.leave().receive('ok', r));
    await call(`${t.url}/api/tasks/${id}/cancel`, { token: alice, method: 'POST' });
  }

  it("the seed's single path: POST, join task:<id>, progress, then image_response success", async () => {
    const before = await countTasks('alice');
    const created = await call(`${t.url}/api/tasks`, {
      token: alice,
      body: { input_data: { type: 'image', prompt: 'Test image' } },
    });
    expect(created.status).toBe(202);
    const id = created.body.task_id;
    const socket = connect(alice);
    const { events, joined } = joinRecording(socket, `task:${id}`, { last_seq: 0 });
    const reply = await joined;
    expect(reply.task.id).toBe(id);
    expect(reply.task.model).toBe('google/imagen-4-fast');
    await waitFor('image_response', () => events.find((e) => e.event === 'image_response'), 30_000);
    expect(await countTasks('alice')).toBe(before + 1);
    await afterMarker(socket);
    expectCleanSequence(events, id);
    expect(events.filter((e) => e.event === 'progress').length).toBeGreaterThan(0);
    const final = events.find((e) => e.event === 'image_response')!;
    expect(final.payload).toMatchObject({ task_id: id, status: 'success', error: null });
    expect(final.payload.output.urls[0]).toMatch(new RegExp(`/files/${id}/`));
    expect(events.some((e) => e.payload.status === 'failed' || e.payload.error)).toBe(false);
    const file = await fetch(final.payload.output.urls[0]);
    expect(file.status).toBe(200);
  });

  it("the seed's dual path: a legacy image_generate on the REST task's topic answers with that task", async () => {
    const before = await countTasks('alice');
    const created = await call(`${t.url}/api/tasks`, {
      token: alice,
      body: { input_data: { type: 'image', prompt: 'Test image' } },
    });
    const id = created.body.task_id;
    const socket = connect(alice);
    const { channel, events, joined } = joinRecording(socket, `task:${id}`);
    await joined;
    const reply = await push(channel, 'image_generate', { prompt: 'Test image', model: 'google/imagen-4-fast' });
    expect(reply.status).toBe('ok');
    expect(reply.response.task_id).toBe(id);
    expect(reply.response.task.id).toBe(id);
    await waitFor('image_response', () => events.find((e) => e.event === 'image_response'), 30_000);
    expect(await countTasks('alice')).toBe(before + 1);
    await afterMarker(socket);
    // Joined without last_seq: live events from the join on, each once, in order, all of this task.
    const seqs = events.map((e) => e.payload.seq);
    expect(seqs).toEqual([...new Set(seqs)].sort((a, b) => a - b));
    for (const e of events) expect(e.payload.task_id).toBe(id);
    expect(events.filter((e) => e.event === 'image_response')).toHaveLength(1);
    expect(events.find((e) => e.event === 'image_response')!.payload.status).toBe('success');
    const log = (await call(`${t.url}/api/tasks/${id}/events`, { token: alice })).body.data;
    expect(
      log.filter((e: { event: string; payload: { status?: string } }) => e.payload.status === 'failed'),
    ).toHaveLength(0);
  });

  it('a fresh UUID topic: image_generate creates the task with that id; a second push does not make another', async () => {
    const id = '6f1c0d3e-8a4b-4c5d-9e6f-0a1b2c3d4e5f'.replace('6f1c', backend === 'pglite' ? '6f1c' : '7f1c');
    const socket = connect(alice);
    const { channel, events, joined } = joinRecording(socket, `task:${id}`);
    expect((await joined).task).toBeNull();
    const [a, b] = await Promise.all([
      push(channel, 'image_generate', { prompt: 'a fox' }),
      push(channel, 'image_generate', { prompt: 'a fox' }),
    ]);
    expect(a.status).toBe('ok');
    expect(b.status).toBe('ok');
    expect(a.response.task_id).toBe(id);
    expect(b.response.task_id).toBe(id);
    expect(await t.gw.db('tasks').where({ id })).toHaveLength(1);
    await waitFor('image_response', () => events.find((e) => e.event === 'image_response'), 30_000);
    await afterMarker(socket);
    expectCleanSequence(events, id);
  });

  it('refuses bad generate input on the channel with the field named, storing nothing', async () => {
    const id = backend === 'pglite' ? '11111111-2222-4333-8444-555555555555' : '11111111-2222-4333-8444-555555555556';
    const { channel, joined } = joinRecording(connect(alice), `task:${id}`);
    await joined;
    const bad = await push(channel, 'image_generate', { prompt: 'x', model: 'gpt-4.1' });
    expect(bad).toEqual({
      status: 'error',
      response: { reason: 'invalid input', errors: { model: ['is not supported for image_gen'] } },
    });
    const noPrompt = await push(channel, 'video_generate', {});
    expect(noPrompt.response.errors.prompt).toEqual(["can't be blank"]);
    const unknown = await push(channel, 'make_coffee', {});
    expect(unknown.status).toBe('error');
    expect(await t.gw.db('tasks').where({ id })).toHaveLength(0);
  });

  it('cancel on the channel cancels the task', async () => {
    const id = backend === 'pglite' ? '21111111-2222-4333-8444-555555555555' : '21111111-2222-4333-8444-555555555556';
    const socket = connect(alice);
    const { channel, events, joined } = joinRecording(socket, `task:${id}`);
    await joined;
    await push(channel, 'video_generate', { prompt: 'slow video' });
    const res = await push(channel, 'cancel', {});
    expect(res.status).toBe('ok');
    expect(res.response.task_id).toBe(id);
    await waitFor('video_response', () => events.find((e) => e.event === 'video_response'), 30_000);
    await afterMarker(socket);
    const final = events.find((e) => e.event === 'video_response')!;
    expect(final.payload.status).toBe('failed');
    expect(final.payload.error.code).toBe('canceled');
    expectCleanSequence(events, id);
  });

  it('a client that drops mid-task and rejoins with last_seq gets every event once, in order', async () => {
    const created = await call(`${t.url}/api/tasks`, {
      token: alice,
      body: { input_data: { type: 'text', prompt: 'tell me a story' } },
    });
    const id = created.body.task_id;
    const first = joinRecording(connect(alice), `task:${id}`, { last_seq: 0 });
    await first.joined;
    await waitFor('first delta', () => first.events.some((e) => e.event === 'text_delta'), 30_000);
    sockets.pop()!.disconnect();
    const got = [...first.events];
    const lastSeq = got[got.length - 1]!.payload.seq;
    // The task goes on while the client is away: the rejoin has events to replay.
    await waitFor(
      'an event committed while away',
      async () => (await t.gw.db('task_events').where({ task_id: id }).max('seq as seq').first())!.seq > lastSeq,
      30_000,
    );
    const socket = connect(alice);
    const second = joinRecording(socket, `task:${id}`, { last_seq: lastSeq });
    await second.joined;
    await waitFor('text_response', () => second.events.find((e) => e.event === 'text_response'), 30_000);
    await afterMarker(socket);
    const all = [...got, ...second.events];
    expectCleanSequence(all, id);
    const text = all
      .filter((e) => e.event === 'text_delta')
      .map((e) => e.payload.delta)
      .join('');
    expect(text).toBe(all.find((e) => e.event === 'text_response')!.payload.output.text);
  });

  it('a client that joins after the task finished gets the final state and, with last_seq, every event', async () => {
    const created = await call(`${t.url}/api/tasks`, {
      token: alice,
      body: { input_data: { type: 'image', prompt: 'late' } },
    });
    const id = created.body.task_id;
    await waitFor(
      'success',
      async () => (await call(`${t.url}/api/tasks/${id}`, { token: alice })).body.data.status === 'succeeded',
      30_000,
    );
    const socket = connect(alice);
    const late = joinRecording(socket, `task:${id}`, { last_seq: 0 });
    const reply = await late.joined;
    expect(reply.task.status).toBe('succeeded');
    await waitFor('replayed final event', () => late.events.find((e) => e.event === 'image_response'), 5000);
    await afterMarker(socket);
    expectCleanSequence(late.events, id);
    expect(late.events.length).toBe(reply.task.last_seq);
  });

  it("Bob cannot join Alice's task nor her feed", async () => {
    const created = await call(`${t.url}/api/tasks`, {
      token: alice,
      body: { input_data: { type: 'image', prompt: 'mine' } },
    });
    const bobSocket = connect(bob);
    await expect(joinRecording(bobSocket, `task:${created.body.task_id}`).joined).rejects.toMatchObject({
      response: { reason: 'unauthorized' },
    });
    await expect(joinRecording(bobSocket, 'tasks:alice').joined).rejects.toMatchObject({
      response: { reason: 'unauthorized' },
    });
    await expect(joinRecording(bobSocket, 'tasks:bob').joined).resolves.toEqual({});
  });

  it('a socket without a good token is refused', async () => {
    const status = await new Promise<number>((resolve) => {
      const ws = new WebSocket(`${t.url.replace('http', 'ws')}/socket/websocket?vsn=2.0.0&token=forged`);
      ws.on('unexpected-response', (_req, r) => resolve(r.statusCode ?? 0));
      ws.on('open', () => resolve(101));
      ws.on('error', () => undefined);
    });
    expect(status).toBe(403);
    const none = await new Promise<number>((resolve) => {
      const ws = new WebSocket(`${t.url.replace('http', 'ws')}/socket/websocket?vsn=2.0.0`);
      ws.on('unexpected-response', (_req, r) => resolve(r.statusCode ?? 0));
      ws.on('open', () => resolve(101));
      ws.on('error', () => undefined);
    });
    expect(none).toBe(403);
  });

  it("the tasks:<user> feed carries every event of the user's tasks", async () => {
    const socket = connect(alice);
    const feed = joinRecording(socket, 'tasks:alice');
    await feed.joined;
    const created = await call(`${t.url}/api/tasks`, {
      token: alice,
      body: { input_data: { type: 'image', prompt: 'feed' } },
    });
    const id = created.body.task_id;
    await waitFor(
      'feed final',
      () => feed.events.find((e) => e.event === 'image_response' && e.payload.task_id === id),
      30_000,
    );
    await afterMarker(socket, feed);
    expectCleanSequence(
      feed.events.filter((e) => e.payload.task_id === id),
      id,
    );
  });
});
