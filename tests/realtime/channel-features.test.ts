/** handleInfo (send / extra subscriptions), intercept + handleOut, Presence wire shapes (§G 50). */
import { Presence, type Channel, type InfoBroadcast } from '../../src/realtime';
import { RawClient, startServer, type TestServer } from './helpers';

let srv: TestServer;
let presence: Presence;
const infoChannel: Channel = {
  join: (_topic, payload, socket) => {
    socket.send('after_join');
    const extra = (payload as { follow?: string }).follow;
    if (extra) socket.subscribe(extra);
    // handleInfo must run after join returned, so it sees this.
    socket.assigns.ready = true;
    return { status: 'ok' };
  },
  handleInfo: (msg, socket) => {
    if (msg === 'after_join') socket.push('welcome', { topic: socket.topic, ready: socket.assigns.ready === true });
    else if ((msg as InfoBroadcast).event === 'stop_now') return { stop: 'normal' };
    else
      socket.push('relayed', {
        from: (msg as InfoBroadcast).topic,
        event: (msg as InfoBroadcast).event,
        payload: (msg as InfoBroadcast).payload,
      });
    return undefined;
  },
  intercept: ['secret', 'maybe'],
  handleOut: (event, payload, socket) => {
    if (event === 'secret') socket.push('secret', { redacted: true });
    // 'maybe' is dropped for this client
  },
};

beforeAll(async () => {
  srv = await startServer({ connect: (p) => ({ assigns: { user: p.user } }) }, (rt) => {
    presence = new Presence(rt);
    rt.channel('info:*', infoChannel);
    rt.channel('pres:*', {
      join: (_t, _p, socket) => {
        presence.track(socket, String(socket.assigns.user), { online_at: '1', device: 'ios' });
        presence.pushState(socket);
        return { status: 'ok' };
      },
      handleIn: (event, payload, socket) => {
        if (event === 'away') {
          presence.update(socket, String(socket.assigns.user), { online_at: '1', device: 'ios', away: true });
          return { reply: 'ok' };
        }
        if (event === 'untrack') {
          presence.untrack(socket, String(socket.assigns.user));
          return { reply: 'ok' };
        }
        return undefined;
      },
    });
  });
});
afterAll(() => srv.close());

test('socket.send → handleInfo after the join reply; extra topic broadcasts → handleInfo', async () => {
  const c = await RawClient.connect(`${srv.wsUrl}?vsn=2.0.0`);
  c.send(['1', '1', 'info:a', 'phx_join', { follow: 'side:feed' }]);
  expect(await c.json()).toEqual(['1', '1', 'info:a', 'phx_reply', { status: 'ok', response: {} }]);
  expect(await c.json()).toEqual(['1', null, 'info:a', 'welcome', { topic: 'info:a', ready: true }]);
  srv.rt.broadcast('side:feed', 'item', { n: 1 });
  expect(await c.json()).toEqual([
    '1',
    null,
    'info:a',
    'relayed',
    { from: 'side:feed', event: 'item', payload: { n: 1 } },
  ]);
  srv.rt.broadcast('side:feed', 'stop_now', {});
  expect(await c.json()).toEqual(['1', '1', 'info:a', 'phx_close', {}]);
  // after the channel ended, the extra subscription is gone too
  srv.rt.broadcast('side:feed', 'item', { n: 2 });
  expect(await c.drain(50)).toEqual([]);
  expect(srv.rt.pubsub.subscriberCount('side:feed')).toBe(0);
  await c.close();
});

test('intercepted broadcasts go through handleOut (rewrite or drop); others pass straight', async () => {
  const c = await RawClient.connect(`${srv.wsUrl}?vsn=2.0.0`);
  await c.call(['1', '1', 'info:b', 'phx_join', {}]);
  await c.json(); // welcome
  srv.rt.broadcast('info:b', 'secret', { password: 'x' });
  srv.rt.broadcast('info:b', 'maybe', {});
  srv.rt.broadcast('info:b', 'plain', { ok: true });
  const got = await c.drain(80);
  expect(got).toEqual([
    ['1', null, 'info:b', 'secret', { redacted: true }],
    [null, null, 'info:b', 'plain', { ok: true }],
  ]);
  await c.close();
});

test('G50 presence_state after join, diffs on join, update (phx_ref_prev, old meta in leaves), untrack, and leave on close', async () => {
  const a = await RawClient.connect(`${srv.wsUrl}?vsn=2.0.0&user=u1`);
  await a.call(['1', '1', 'pres:room', 'phx_join', {}]);
  const state = (await a.json()) as [
    string,
    null,
    string,
    string,
    Record<string, { metas: Record<string, unknown>[] }>,
  ];
  expect(state.slice(0, 4)).toEqual(['1', null, 'pres:room', 'presence_state']);
  expect(state[4]).toEqual({
    u1: { metas: [{ online_at: '1', device: 'ios', phx_ref: expect.stringMatching(/^[\w-]{16}$/) }] },
  });
  const ref1 = state[4].u1!.metas[0]!.phx_ref;

  // The tracking channel is subscribed during join, so it also sees its own join diff, after the state.
  expect(((await a.json()) as unknown[])[4]).toEqual({
    joins: { u1: { metas: [expect.objectContaining({ phx_ref: ref1 })] } },
    leaves: {},
  });

  const b = await RawClient.connect(`${srv.wsUrl}?vsn=2.0.0&user=u2`);
  await b.call(['1', '1', 'pres:room', 'phx_join', {}]);
  const bState = (await b.json()) as unknown[];
  expect(Object.keys(bState[4] as object).sort()).toEqual(['u1', 'u2']);
  await b.json(); // b's own join diff
  const join = (await a.json()) as unknown[];
  expect(join).toEqual([
    null,
    null,
    'pres:room',
    'presence_diff',
    {
      joins: { u2: { metas: [{ online_at: '1', device: 'ios', phx_ref: expect.any(String) }] } },
      leaves: {},
    },
  ]);

  a.send(['1', '2', 'pres:room', 'away', {}]);
  const frames = [await b.json()] as unknown[];
  const update = frames[0] as [
    null,
    null,
    string,
    string,
    {
      joins: Record<string, { metas: Record<string, unknown>[] }>;
      leaves: Record<string, { metas: Record<string, unknown>[] }>;
    },
  ];
  expect(update[3]).toBe('presence_diff');
  expect(update[4].joins.u1!.metas[0]).toEqual({
    online_at: '1',
    device: 'ios',
    away: true,
    phx_ref: expect.any(String),
    phx_ref_prev: ref1,
  });
  expect(update[4].leaves.u1!.metas[0]).toEqual({ online_at: '1', device: 'ios', phx_ref: ref1 });

  b.send(['1', '2', 'pres:room', 'untrack', {}]);
  // a also got its own update diff and reply first: read on until the untrack diff.
  let leaveDiff: unknown[] | undefined;
  while (leaveDiff === undefined) {
    const f = (await a.json()) as unknown[];
    if (f[3] === 'presence_diff' && Object.keys((f[4] as { leaves: object }).leaves).includes('u2')) leaveDiff = f;
  }
  expect(leaveDiff?.[4]).toEqual({
    joins: {},
    leaves: { u2: { metas: [expect.objectContaining({ phx_ref: expect.any(String) })] } },
  });
  expect(Object.keys(presence.list('pres:room'))).toEqual(['u1']);

  b.terminate();
  a.terminate();
  await new Promise((r) => setTimeout(r, 50));
  expect(presence.list('pres:room')).toEqual({});
});

test('a broadcast sent while an async join runs is delivered after the join reply and the join pushes', async () => {
  let release!: () => void;
  const gate = new Promise<void>((r) => {
    release = r;
  });
  const s = await startServer({}, (rt) =>
    rt.channel('slow:*', {
      join: async (_t, _p, socket) => {
        await gate;
        socket.push('replay', { seq: 1 });
        return { status: 'ok' };
      },
    }),
  );
  try {
    const c = await RawClient.connect(`${s.wsUrl}?vsn=2.0.0`);
    c.send(['1', '1', 'slow:x', 'phx_join', {}]);
    await new Promise((r) => setTimeout(r, 30));
    s.rt.broadcast('slow:x', 'live', { seq: 2 });
    release();
    expect(await c.json()).toEqual(['1', '1', 'slow:x', 'phx_reply', { status: 'ok', response: {} }]);
    expect(await c.json()).toEqual(['1', null, 'slow:x', 'replay', { seq: 1 }]);
    expect(await c.json()).toEqual([null, null, 'slow:x', 'live', { seq: 2 }]);
    await c.close();
  } finally {
    await s.close();
  }
});

test('a refused join leaves no subscription behind and does not call terminate', async () => {
  const terminate = jest.fn();
  const s = await startServer({}, (rt) =>
    rt.channel('no:*', { join: async () => ({ status: 'error', response: { reason: 'unauthorized' } }), terminate }),
  );
  try {
    const c = await RawClient.connect(`${s.wsUrl}?vsn=2.0.0`);
    await c.call(['1', '1', 'no:x', 'phx_join', {}]);
    expect(s.rt.pubsub.subscriberCount('no:x')).toBe(0);
    s.rt.broadcast('no:x', 'e', {});
    expect(await c.drain(30)).toEqual([]);
    await c.close();
    expect(terminate).not.toHaveBeenCalled();
  } finally {
    await s.close();
  }
});
