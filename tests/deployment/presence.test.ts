import path from 'node:path';
import WebSocket from 'ws';
import { Socket, Presence as ClientPresence, type Channel as ClientChannel } from 'phoenix';
import { TEST_PG_URL } from '../helpers/db';
import { spawnGateway, type GatewayProcess } from '../helpers/gateway-process';
import { waitFor } from '../runner/helpers';

/**
 * Issue 12, acceptance 3: presence across processes. Three realtime processes share one
 * PostgreSQL through the cluster bus (NOTIFY, or Redis with PYRE_TEST_BUS=redis); a phoenix.js client (Presence helper) on one and
 * Swift-shaped raw V2 frames on another see one merged presence_state / presence_diff; a
 * process killed with SIGKILL loses its entries within expireMs + heartbeatMs.
 */
const FIXTURE = path.join(__dirname, '..', 'fixtures', 'presence-node.ts');
const HEARTBEAT_MS = 300;
const EXPIRE_MS = 1500;
const BOUND_MS = EXPIRE_MS + HEARTBEAT_MS;

(TEST_PG_URL ? describe : describe.skip)('presence across processes', () => {
  const nodes: GatewayProcess[] = [];
  const sockets: Socket[] = [];
  const raws: WebSocket[] = [];
  const notifyChannel = `pyre_presence_test_${process.pid}`;
  const startNode = async (label: string) => {
    const n = await spawnGateway(
      {
        PYRE_FIXTURE_PG_URL: TEST_PG_URL!,
        PYRE_FIXTURE_NOTIFY_CHANNEL: notifyChannel,
        PRESENCE_HEARTBEAT_MS: String(HEARTBEAT_MS),
        PRESENCE_EXPIRE_MS: String(EXPIRE_MS),
        NODE_LABEL: label,
      },
      60_000,
      FIXTURE,
    );
    nodes.push(n);
    return n;
  };
  afterAll(async () => {
    for (const s of sockets) s.disconnect();
    for (const w of raws) w.terminate();
    await Promise.all(nodes.map((n) => n.kill9()));
  });

  /** phoenix.js on `node`, with its Presence helper. */
  async function phoenixClient(node: GatewayProcess, user: string) {
    const s = new Socket(`${node.url.replace('http', 'ws')}/socket`, { transport: WebSocket as never });
    sockets.push(s);
    s.connect();
    const ch: ClientChannel = s.channel('room:lobby', { user });
    const presence = new ClientPresence(ch);
    await new Promise((resolve, reject) => ch.join().receive('ok', resolve).receive('error', reject));
    return { socket: s, ch, list: () => presence.list((key: string) => key).sort() as string[] };
  }

  /** Swift-shaped raw V2 frames on `node`: applies presence_state and presence_diff as Swift's Presence does. */
  async function swiftClient(node: GatewayProcess, user: string) {
    const ws = new WebSocket(`${node.url.replace('http', 'ws')}/socket/websocket?vsn=2.0.0`);
    raws.push(ws);
    const state: Record<string, { metas: { phx_ref: string }[] }> = {};
    const frames: any[] = [];
    ws.on('message', (d: Buffer) => {
      const f = JSON.parse(d.toString());
      frames.push(f);
      const [, , topic, event, payload] = f;
      if (topic !== 'room:lobby') return;
      if (event === 'presence_state') {
        for (const k of Object.keys(state)) delete state[k];
        Object.assign(state, payload);
      } else if (event === 'presence_diff') {
        for (const [k, { metas }] of Object.entries(payload.joins as typeof state))
          state[k] = { metas: [...(state[k]?.metas ?? []), ...metas] };
        for (const [k, { metas }] of Object.entries(payload.leaves as typeof state)) {
          const refs = new Set(metas.map((m) => m.phx_ref));
          const kept = (state[k]?.metas ?? []).filter((m) => !refs.has(m.phx_ref));
          if (kept.length) state[k] = { metas: kept };
          else delete state[k];
        }
      }
    });
    await new Promise((r, j) => ws.once('open', r).once('error', j));
    ws.send(JSON.stringify(['1', '1', 'room:lobby', 'phx_join', { user }]));
    await waitFor('swift join reply', () => frames.find((f) => f[1] === '1' && f[3] === 'phx_reply'));
    return { ws, frames, list: () => Object.keys(state).sort(), state };
  }

  it('clients on different processes see each other join and leave; a kill -9ed process is gone within the bound', async () => {
    const a = await startNode('a');
    const b = await startNode('b');
    const c = await startNode('c');

    const ann = await phoenixClient(a, 'ann');
    const bob = await swiftClient(b, 'bob');
    await waitFor('ann and bob to see each other', () =>
      JSON.stringify(ann.list()) === '["ann","bob"]' && JSON.stringify(bob.list()) === '["ann","bob"]' ? true : null,
    );
    // Swift's strict shapes: {key: {metas: [{..., phx_ref}]}} and nothing else beside metas.
    const stateFrame = bob.frames.find((f) => f[3] === 'presence_state');
    expect(stateFrame[0]).toBe('1'); // a push for this join
    for (const entry of Object.values(stateFrame[4]) as any[]) {
      expect(Object.keys(entry)).toEqual(['metas']);
      expect(entry.metas[0].phx_ref).toHaveLength(16);
    }
    expect(bob.state.ann!.metas[0]).toMatchObject({ node: 'a' });

    // A third client on the third process; then bob leaves his channel.
    const cy = await phoenixClient(c, 'cy');
    await waitFor('everyone to see ann, bob, cy', () =>
      [ann.list(), bob.list(), cy.list()].every((l) => JSON.stringify(l) === '["ann","bob","cy"]') ? true : null,
    );
    bob.ws.send(JSON.stringify(['1', '2', 'room:lobby', 'phx_leave', {}]));
    await waitFor('bob to leave everywhere', () =>
      [ann.list(), cy.list()].every((l) => JSON.stringify(l) === '["ann","cy"]') ? true : null,
    );

    // dee joins on b; then b is killed with SIGKILL (no leave is ever sent).
    const dee = await swiftClient(b, 'dee');
    await waitFor('dee to be seen', () => (JSON.stringify(ann.list()) === '["ann","cy","dee"]' ? true : null));
    expect(dee.list()).toEqual(['ann', 'cy', 'dee']);
    const killedAt = Date.now();
    await b.kill9();
    await waitFor(
      "the killed process's entries to leave",
      () => ([ann.list(), cy.list()].every((l) => JSON.stringify(l) === '["ann","cy"]') ? true : null),
      BOUND_MS + 15_000,
      20,
    );
    const goneAfterMs = Date.now() - killedAt;
    process.stdout.write(`presence: kill -9ed node's entries gone after ${goneAfterMs} ms (bound ${BOUND_MS} ms)\n`);

    // A process started later gets the others' entries (state transfer), and they see its client.
    const d = await startNode('d');
    const eve = await swiftClient(d, 'eve');
    await waitFor('eve to see everyone, and everyone eve', () =>
      [ann.list(), cy.list(), eve.list()].every((l) => JSON.stringify(l) === '["ann","cy","eve"]') ? true : null,
    );
  }, 120_000);
});
