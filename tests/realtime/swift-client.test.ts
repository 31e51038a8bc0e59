/**
 * Replays SwiftPhoenixClient 5.3.4 frames, byte for byte as the library sends them
 * (tests/fixtures/swift/swift-phoenix-client-5.3.4.json), and checks every server frame against
 * what that client accepts (5-element array, string topic/event, object payload, string refs).
 */
import fs from 'node:fs';
import path from 'node:path';
import { Presence, type Channel } from '../../src/realtime';
import { RawClient, startServer, type TestServer } from './helpers';

const FIXTURE = path.join(__dirname, '..', 'fixtures', 'swift', 'swift-phoenix-client-5.3.4.json');
const fx = JSON.parse(fs.readFileSync(FIXTURE, 'utf8'));
const TOPIC = 'task:7d2c9f8e-3b1a-4c6d-9e5f-0a1b2c3d4e5f';

/** What SwiftPhoenixClient 5.3.4 parses (Message.swift): anything else it drops. */
function swiftAccepts(frame: unknown): boolean {
  if (!Array.isArray(frame) || frame.length < 5) return false;
  const [joinRef, ref, topic, event, payload] = frame;
  const refOk = (r: unknown) => r === null || typeof r === 'string';
  return (
    refOk(joinRef) &&
    refOk(ref) &&
    typeof topic === 'string' &&
    typeof event === 'string' &&
    payload !== null &&
    typeof payload === 'object' &&
    !Array.isArray(payload) &&
    (event !== 'phx_reply' || typeof (payload as { status?: unknown }).status === 'string')
  );
}

/** Swift's presence cast: [String: [String: [[String: Any]]]] with string phx_ref in every meta. */
function swiftPresenceAccepts(state: unknown): boolean {
  if (state === null || typeof state !== 'object' || Array.isArray(state)) return false;
  return Object.values(state as Record<string, unknown>).every(
    (entry) =>
      entry !== null &&
      typeof entry === 'object' &&
      Array.isArray((entry as { metas?: unknown }).metas) &&
      Object.values(entry as Record<string, unknown>).every(
        (v) =>
          Array.isArray(v) &&
          v.every(
            (m) => m !== null && typeof m === 'object' && typeof (m as { phx_ref?: unknown }).phx_ref === 'string',
          ),
      ),
  );
}

class SwiftClient {
  seen: unknown[] = [];
  constructor(readonly c: RawClient) {}
  static async connect(url: string): Promise<SwiftClient> {
    return new SwiftClient(await RawClient.connect(url));
  }
  /** Sends the fixture text exactly (with its `\/` escapes). */
  send(text: string): void {
    this.c.sendText(text);
  }
  async recv(): Promise<unknown> {
    const f = await this.c.next();
    expect(f.isBinary).toBe(false);
    const j = JSON.parse(f.data.toString('utf8'));
    expect(swiftAccepts(j)).toBe(true);
    this.seen.push(j);
    return j;
  }
}

const taskChannel: Channel = {
  join: (topic, payload) => {
    if ((payload as { refuse?: boolean }).refuse) return { status: 'error', response: { reason: 'unauthorized' } };
    return { status: 'ok', response: { task: null } };
  },
  handleIn: (event, payload, socket) => {
    if (event === 'image_generate') {
      // The fixture's model has a '/', sent as '\/': it must arrive decoded.
      expect((payload as { model: string }).model).toBe('google/imagen-4-fast');
      return { reply: 'ok', response: { task_id: socket.topic.slice('task:'.length) } };
    }
    return { reply: 'error', response: { reason: 'unknown' } };
  },
};

let srv: TestServer;
let refusing: TestServer;
const seenParams: unknown[] = [];
beforeAll(async () => {
  srv = await startServer(
    {
      connect: (params) => {
        seenParams.push(params);
        return { assigns: {} };
      },
    },
    (rt) => {
      rt.channel('task:*', taskChannel);
      const presence = new Presence(rt);
      rt.channel('tasks:*', {
        join: (_t, _p, socket) => {
          presence.track(socket, `user:${socket.params.device ?? 'x'}`, { online_at: '1712345678' });
          presence.pushState(socket);
          return { status: 'ok' };
        },
      });
    },
  );
  refusing = await startServer({}, (rt) =>
    rt.channel('task:*', { join: () => ({ status: 'error', response: { reason: 'unauthorized' } }) }),
  );
});
afterAll(async () => {
  await srv.close();
  await refusing.close();
});

const swiftUrl = (s: TestServer) => fx.connect.url.replace('ws://host:4000/socket/websocket', s.wsUrl) as string;

test('the connect URL (vsn first, flat params) is accepted and decoded', async () => {
  seenParams.length = 0;
  for (const url of [fx.connect.url, ...fx.connect.url_alternatives] as string[]) {
    const sc = await SwiftClient.connect(url.replace('ws://host:4000/socket/websocket', srv.wsUrl));
    await sc.c.close();
  }
  expect(seenParams).toEqual([
    { vsn: '2.0.0', token: 'abc', device: 'ios' },
    { vsn: '2.0.0', device: 'ios', token: 'abc' },
  ]);
});

test('the fixture session: every server frame equals the fixture, then the client closes with 1000', async () => {
  const sc = await SwiftClient.connect(swiftUrl(srv));
  const frames = fx.frames_out.session.frames as {
    dir: string;
    text?: string;
    json?: unknown;
    close_frame?: unknown;
  }[];
  for (const f of frames) {
    if (f.dir === 'out' && f.text) sc.send(f.text);
    else if (f.dir === 'in') expect(await sc.recv()).toEqual(f.json);
  }
  // After the leave reply the server also sends phx_close for join_ref 3 (Swift ignores it: channel removed).
  expect(await sc.recv()).toEqual(['3', '3', TOPIC, 'phx_close', {}]);
  const closed = await sc.c.close();
  expect(closed.code).toBe(1000);
  expect(srv.rt.stats().channels).toBe(0);
});

test('variant: Example-app ref offsets and a push sent before the join reply', async () => {
  const sc = await SwiftClient.connect(swiftUrl(srv));
  const [join, push, hb, leave] = fx.frames_out.variants.find(
    (v: { name: string }) => v.name === 'example_app_registers_three_socket_callbacks_first',
  ).frames_out as string[];
  sc.send(join!);
  sc.send(push!);
  expect(await sc.recv()).toEqual(['6', '6', TOPIC, 'phx_reply', { status: 'ok', response: { task: null } }]);
  expect(await sc.recv()).toEqual([
    '6',
    '7',
    TOPIC,
    'phx_reply',
    { status: 'ok', response: { task_id: TOPIC.slice(5) } },
  ]);
  sc.send(hb!);
  expect(await sc.recv()).toEqual([null, '8', 'phoenix', 'phx_reply', { status: 'ok', response: {} }]);
  sc.send(leave!);
  expect(await sc.recv()).toEqual(['6', '9', TOPIC, 'phx_reply', { status: 'ok', response: {} }]);
  expect(await sc.recv()).toEqual(['6', '6', TOPIC, 'phx_close', {}]);
  const early = fx.frames_out.variants.find((v: { name: string }) => v.name === 'push_called_before_join_reply')
    .frames_out as string[];
  sc.send(early[0]!);
  sc.send(early[1]!);
  expect(await sc.recv()).toEqual(['3', '3', TOPIC, 'phx_reply', { status: 'ok', response: { task: null } }]);
  expect(await sc.recv()).toEqual([
    '3',
    '5',
    TOPIC,
    'phx_reply',
    { status: 'ok', response: { task_id: TOPIC.slice(5) } },
  ]);
  await sc.c.close();
});

test('variant: join with no params, second channel on the same topic (leave then join)', async () => {
  const sc = await SwiftClient.connect(swiftUrl(srv));
  const [noParams] = fx.frames_out.variants.find((v: { name: string }) => v.name === 'join_with_no_params')
    .frames_out as string[];
  sc.send(noParams!);
  expect(await sc.recv()).toEqual(['3', '3', TOPIC, 'phx_reply', { status: 'ok', response: { task: null } }]);
  const [, leave, rejoin] = fx.frames_out.variants.find((v: { name: string }) => v.name === 'second_channel_same_topic')
    .frames_out as string[];
  sc.send(leave!);
  sc.send(rejoin!);
  expect(await sc.recv()).toEqual(['3', '6', TOPIC, 'phx_reply', { status: 'ok', response: {} }]);
  expect(await sc.recv()).toEqual(['3', '3', TOPIC, 'phx_close', {}]);
  expect(await sc.recv()).toEqual(['7', '7', TOPIC, 'phx_reply', { status: 'ok', response: { task: null } }]);
  await sc.c.close();
});

test('variant: join error reply, retried with new refs, same answer, no phx_close', async () => {
  const v = fx.frames_out.variants.find((x: { name: string }) => x.name === 'join_error_reply');
  const sc = await SwiftClient.connect(swiftUrl(refusing));
  for (const step of (v.frames_out_timeline as { text: string }[]).slice(0, 4)) {
    sc.send(step.text);
    const n = JSON.parse(step.text)[1];
    expect(await sc.recv()).toEqual(JSON.parse(v.frames_in_per_attempt.replace(/<n>/g, n)));
  }
  expect(await sc.c.drain(50)).toEqual([]);
  await sc.c.close();
});

test('variant leave_while_socket_down: a leave for a topic this connection never joined', async () => {
  const sc = await SwiftClient.connect(swiftUrl(srv));
  const v = fx.frames_out.variants.find((x: { name: string }) => x.name === 'leave_while_socket_down');
  sc.send(v.frames_out_timeline[0].text);
  // Phoenix (socket.ex handle_in(nil, phx_leave)) answers ok with the frame's join_ref, no phx_close;
  // the fixture's "unmatched topic" note predates that clause.
  expect(await sc.recv()).toEqual(['3', '6', TOPIC, 'phx_reply', { status: 'ok', response: {} }]);
  expect(await sc.c.drain(50)).toEqual([]);
  await sc.c.close();
});

test('reconnect after a transport drop: rejoin with a new join_ref on a fresh connection', async () => {
  const first = await SwiftClient.connect(swiftUrl(srv));
  first.send(fx.frames_out.session.frames[0].text);
  await first.recv();
  first.c.terminate();
  const v = fx.frames_out.variants.find((x: { name: string }) => x.name === 'transport_drop_then_reconnect');
  const sc = await SwiftClient.connect(swiftUrl(srv));
  sc.send(v.frames_out_timeline[1].text);
  expect(await sc.recv()).toEqual(['5', '5', TOPIC, 'phx_reply', { status: 'ok', response: { task: null } }]);
  sc.send(v.frames_out_timeline[2].text);
  expect(await sc.recv()).toEqual([null, '6', 'phoenix', 'phx_reply', { status: 'ok', response: {} }]);
  await sc.c.close();
});

test('presence_state and presence_diff have the exact shape Swift 5.3.4 casts', async () => {
  const url = (device: string) => `${srv.wsUrl}?vsn=2.0.0&token=abc&device=${device}`;
  const a = await SwiftClient.connect(url('ios'));
  a.send('["3","3","tasks:user_42","phx_join",{}]');
  expect(await a.recv()).toEqual(['3', '3', 'tasks:user_42', 'phx_reply', { status: 'ok', response: {} }]);
  const state = (await a.recv()) as unknown[];
  expect(state.slice(0, 4)).toEqual(['3', null, 'tasks:user_42', 'presence_state']);
  expect(swiftPresenceAccepts(state[4])).toBe(true);
  expect(Object.keys(state[4] as object)).toEqual(['user:ios']);
  // its own join diff follows the state
  expect(Object.keys(((await a.recv()) as [null, null, string, string, { joins: object }])[4].joins)).toEqual([
    'user:ios',
  ]);
  const b = await SwiftClient.connect(url('ipad'));
  b.send('["3","3","tasks:user_42","phx_join",{}]');
  await b.recv();
  await b.recv();
  await b.recv();
  const diff = (await a.recv()) as unknown[];
  expect(diff.slice(0, 4)).toEqual([null, null, 'tasks:user_42', 'presence_diff']);
  const d = diff[4] as { joins: unknown; leaves: unknown };
  expect(Object.keys(d).sort()).toEqual(['joins', 'leaves']);
  expect(swiftPresenceAccepts(d.joins)).toBe(true);
  expect(d.leaves).toEqual({});
  await b.c.close();
  const leave = (await a.recv()) as unknown[];
  expect(swiftPresenceAccepts((leave[4] as { leaves: unknown }).leaves)).toBe(true);
  expect(Object.keys((leave[4] as { leaves: object }).leaves)).toEqual(['user:ipad']);
  await a.c.close();
});

describe('older Swift builds (< 3.0): no vsn, V1 objects in BINARY frames', () => {
  test('join and heartbeat answered as V1 text objects without join_ref', async () => {
    const url = fx.older_versions.url.split('?')[1] as string;
    const c = await RawClient.connect(`${srv.wsUrl}?${url}`);
    const [join, hb] = fx.older_versions.example_frames as { text: string }[];
    c.sendBinary(Buffer.from(join!.text));
    const reply = await c.json();
    expect(reply).toEqual({
      topic: TOPIC,
      event: 'phx_reply',
      payload: { status: 'ok', response: { task: null } },
      ref: '3',
    });
    c.sendBinary(Buffer.from(hb!.text));
    expect(await c.json()).toEqual({
      topic: 'phoenix',
      event: 'phx_reply',
      payload: { status: 'ok', response: {} },
      ref: '5',
    });
    await c.close();
  });
});
