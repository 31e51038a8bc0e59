import http from 'node:http';
import WebSocket from 'ws';
import { TokenSigner } from '../../src/auth/tokens';
import { up as relativeOutputUrls } from '../../migrations/20261129000001_relative_output_urls';
import { BACKENDS, freshDb, type TestDb } from '../helpers/db';
import { TEST_SECRET } from '../helpers/gateway';
import { startRunnerEnv, waitFor, type RunnerEnv } from '../runner/helpers';

/**
 * Issue 12, acceptance 5 (first half): output URLs are stored relative to the gateway and made
 * absolute per response, so HOST=0.0.0.0 without PUBLIC_URL never hands out (or stores)
 * `http://0.0.0.0:…`, and a changed PUBLIC_URL changes the URLs of tasks stored before.
 */
const token = new TokenSigner(TEST_SECRET).mint('alice');
const auth = { authorization: `Bearer ${token}` };

async function get(url: string, headers: Record<string, string> = {}): Promise<any> {
  const res = await fetch(url, { headers: { ...auth, ...headers } });
  expect(res.status).toBe(200);
  return res.json();
}

/** GET with a Host header of our choosing (fetch does not let one set Host). */
function getWithHost(url: string, host: string, headers: Record<string, string>): Promise<any> {
  return new Promise((resolve, reject) => {
    http
      .get(url, { headers: { ...auth, ...headers, host } }, (res) => {
        let body = '';
        res.setEncoding('utf8');
        res.on('data', (c: string) => (body += c));
        res.on('end', () => (res.statusCode === 200 ? resolve(JSON.parse(body)) : reject(new Error(body))));
      })
      .on('error', reject);
  });
}

/** A raw V2 socket (Swift-shaped frames) that joins `topic` and collects every frame. */
async function joinRaw(wsUrl: string, topic: string, payload: object, host?: string) {
  const ws = new WebSocket(`${wsUrl}/socket/websocket?vsn=2.0.0&token=${token}`, host ? { headers: { host } } : {});
  const frames: any[] = [];
  ws.on('message', (d: Buffer) => frames.push(JSON.parse(d.toString())));
  await new Promise((r, j) => ws.once('open', r).once('error', j));
  ws.send(JSON.stringify(['1', '1', topic, 'phx_join', payload]));
  await waitFor('join reply', () => frames.find((f) => f[1] === '1'));
  return { ws, frames };
}

describe.each(BACKENDS)('output URLs on %s', (backend) => {
  let tdb: TestDb;
  let env: RunnerEnv | undefined;
  beforeAll(async () => {
    tdb = await freshDb(backend);
  });
  afterAll(async () => {
    await env?.close();
    await tdb.drop();
  });

  it('HOST=0.0.0.0 without PUBLIC_URL stores relative URLs, answers with the Host the client used; PUBLIC_URL repairs them', async () => {
    env = await startRunnerEnv({
      tdb,
      standin: { clock: 'virtual' },
      env: { HOST: '0.0.0.0', AUTH_SECRET: TEST_SECRET },
    });
    expect(env.url).toMatch(/^http:\/\/0\.0\.0\.0:\d+$/);
    const port = new URL(env.url).port;
    const local = `http://127.0.0.1:${port}`;

    // The feed socket listens before the task ends: its live image_response is made absolute too.
    const feed = await joinRaw(`ws://127.0.0.1:${port}`, 'tasks:alice', {}, `gateway.test:${port}`);
    const created = await fetch(`${local}/api/tasks`, {
      method: 'POST',
      headers: { ...auth, 'content-type': 'application/json' },
      body: JSON.stringify({ input_data: { type: 'image', prompt: 'relative urls' } }),
    });
    expect(created.status).toBe(202);
    const id: string = ((await created.json()) as { task_id: string }).task_id;
    const task = await waitFor(
      'the task to succeed',
      async () => {
        const t = (await get(`${local}/api/tasks/${id}`)).data;
        if (t.status !== 'succeeded') await env!.standin.advance(1000);
        return t.status === 'succeeded' ? t : t.status === 'failed' ? Promise.reject(new Error('failed')) : null;
      },
      60_000,
      100,
    );

    // Stored: relative, never the listen address.
    const row = await tdb.db('tasks').where({ id }).first();
    const stored = JSON.stringify(row.output) + JSON.stringify(await tdb.db('task_events').where({ task_id: id }));
    expect(stored).not.toContain('0.0.0.0');
    expect(row.output.urls[0]).toMatch(new RegExp(`^/files/${id}/[^/]+$`));

    // REST: absolute on the Host the client used (and the scheme a proxy names).
    expect(task.output.urls[0]).toBe(`${local}${row.output.urls[0]}`);
    const viaProxy = (
      await getWithHost(`${local}/api/tasks/${id}`, 'pyre.example.org', { 'x-forwarded-proto': 'https' })
    ).data;
    expect(viaProxy.output.urls[0]).toBe(`https://pyre.example.org${row.output.urls[0]}`);
    const listed = (await get(`${local}/api/tasks`)).data.find((t: any) => t.id === id);
    expect(listed.output.urls[0]).toBe(task.output.urls[0]);
    const evs = (await get(`${local}/api/tasks/${id}/events`)).data;
    expect(evs.at(-1).payload.output.urls[0]).toBe(task.output.urls[0]);
    const file = await fetch(task.output.urls[0]);
    expect(file.status).toBe(200);
    expect(file.headers.get('content-type')).toBe('image/jpeg');

    // Channels: the socket's Host. The feed got the live final event; a task channel replays it.
    const live = await waitFor('the feed to get image_response', () =>
      feed.frames.find((f) => f[3] === 'image_response'),
    );
    expect(live[4].output.urls[0]).toBe(`http://gateway.test:${port}${row.output.urls[0]}`);
    feed.ws.terminate();
    const chan = await joinRaw(`ws://127.0.0.1:${port}`, `task:${id}`, { last_seq: 0 });
    const reply = chan.frames.find((f) => f[1] === '1');
    expect(reply[4].response.task.output.urls[0]).toBe(task.output.urls[0]);
    const replayed = await waitFor('replayed image_response', () => chan.frames.find((f) => f[3] === 'image_response'));
    expect(replayed[4].output.urls[0]).toBe(task.output.urls[0]);
    chan.ws.terminate();

    // A new PUBLIC_URL: the same stored task now names it everywhere.
    await env.close();
    env = await startRunnerEnv({
      tdb,
      standin: { clock: 'virtual' },
      env: { HOST: '0.0.0.0', AUTH_SECRET: TEST_SECRET, PUBLIC_URL: 'https://files.example.com/' },
    });
    const port2 = new URL(env.url).port;
    const again = (await get(`http://127.0.0.1:${port2}/api/tasks/${id}`)).data;
    expect(again.output.urls[0]).toBe(`https://files.example.com${row.output.urls[0]}`);
    const chan2 = await joinRaw(`ws://127.0.0.1:${port2}`, `task:${id}`, { last_seq: 0 });
    expect(chan2.frames.find((f) => f[1] === '1')[4].response.task.output.urls[0]).toBe(again.output.urls[0]);
    chan2.ws.terminate();
  }, 120_000);

  it('the migration makes URLs stored absolute by older versions relative, leaving provider URLs alone', async () => {
    const db = tdb.db;
    const id = '2f1c0d9e-8a7b-4c6d-9e0f-1a2b3c4d5e6f';
    const other = '00000000-0000-4000-8000-000000000001';
    const ours = `http://0.0.0.0:4000/files/${id}/0-0123456789abcdef.jpg`;
    const foreign = `https://replicate.delivery/files/${other}/out.jpg`;
    const theirs = 'https://replicate.delivery/xezq/abc/out-0.webp';
    const base = (await db('tasks').first()) as Record<string, unknown>;
    await db('tasks').insert({
      ...base,
      id,
      pos: undefined,
      prediction_id: null,
      output: JSON.stringify({ urls: [ours, foreign] }),
      provider_output: JSON.stringify({ urls: [theirs] }),
    });
    await db('task_events').insert({
      task_id: id,
      seq: 1,
      event: 'image_response',
      payload: JSON.stringify({ task_id: id, seq: 1, status: 'success', output: { urls: [ours] }, error: null }),
    });
    await relativeOutputUrls(db);
    const row = await db('tasks').where({ id }).first();
    expect(row.output.urls).toEqual([`/files/${id}/0-0123456789abcdef.jpg`, foreign]);
    expect(row.provider_output.urls).toEqual([theirs]);
    const ev = await db('task_events').where({ task_id: id }).first();
    expect(ev.payload.output.urls).toEqual([`/files/${id}/0-0123456789abcdef.jpg`]);
  });
});
