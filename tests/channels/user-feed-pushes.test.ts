/**
 * Pushes to the `tasks:<user_id>` feed, which takes no client events: each gets an error reply,
 * the feed stays joined and keeps delivering, and nothing is logged at error level.
 */
import { Writable } from 'node:stream';
import type { Socket } from 'phoenix';
import { createGateway, type Gateway } from '../../src/app';
import { TokenSigner } from '../../src/auth/tokens';
import { createLogger } from '../../src/log';
import { BACKENDS, freshDb, type TestDb } from '../helpers/db';
import { call, TEST_SECRET, testConfig } from '../helpers/gateway';
import { joinRecording, phoenixSocket, push } from './helpers';
import { waitFor } from '../helpers/wait';

const signer = new TokenSigner(TEST_SECRET);
const alice = signer.mint('alice');

describe.each(BACKENDS)('pushes to tasks:<user_id> on %s', (backend) => {
  let gw: Gateway;
  let url: string;
  let tdb: TestDb;
  let socket: Socket;
  const logLines: Array<{ level: number; msg: string }> = [];

  beforeAll(async () => {
    tdb = await freshDb(backend);
    const sink = new Writable({
      write(chunk, _enc, cb) {
        for (const l of String(chunk).split('\n').filter(Boolean)) logLines.push(JSON.parse(l));
        cb();
      },
    });
    gw = await createGateway({
      config: testConfig({ AUTH_SECRET: TEST_SECRET }),
      logger: createLogger({ level: 'debug', destination: sink }),
      db: tdb.db,
    });
    url = await gw.listen();
  });
  afterAll(async () => {
    socket?.disconnect();
    await gw.close();
    await tdb.drop();
  });

  it('each push gets {"reason":"unknown event"}; the feed stays joined and delivers; no error-level line', async () => {
    socket = phoenixSocket(url, alice);
    const { channel, events, joined } = joinRecording(socket, 'tasks:alice');
    const crashes: unknown[] = [];
    channel.on('phx_error', (p) => {
      crashes.push(p);
    });
    await joined;
    // 150 pushes, in bursts under the socket's 200 frames/s limit.
    for (let burst = 0; burst < 3; burst++) {
      const replies = await Promise.all(
        ['image_generate', 'cancel', 'constructor', 'anything', 'phx_reply'].flatMap((event) =>
          Array.from({ length: 10 }, () => push(channel, event, { prompt: 'x' })),
        ),
      );
      for (const r of replies) expect(r).toEqual({ status: 'error', response: { reason: 'unknown event' } });
    }
    expect(crashes).toEqual([]);
    const created = await call(`${url}/api/tasks`, { token: alice, body: { input_data: { prompt: 'still there?' } } });
    expect(created.status).toBe(202);
    await waitFor('the feed event', () => events.find((e) => e.payload.task_id === created.body.task_id), 10_000);
    expect(gw.realtime.stats().channelCrashes).toBe(0);
    expect(logLines.filter((l) => l.level >= 50)).toEqual([]);
  });
});
