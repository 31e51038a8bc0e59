import WebSocket from 'ws';
import { Socket, type Channel } from 'phoenix';
import { startStandin, STANDIN_MODELS, type Standin } from '../../src/providers/replicate/standin';
import { freshDb, TEST_PG_URL, type TestDb } from '../helpers/db';
import { startGateway, TEST_SECRET, type TestGateway } from '../helpers/gateway';
import { spawnGateway, type GatewayProcess } from '../helpers/gateway-process';

export { waitFor } from '../helpers/wait';

/** A stand-in on real time, sped up; imagen logs a tqdm bar as the seed's logs had. */
export async function fastStandin(speed = 4): Promise<Standin> {
  STANDIN_MODELS['google/imagen-4-fast']!.progress = 'one-bar';
  STANDIN_MODELS['google/imagen-4-fast']!.steps = 10;
  return startStandin({ clock: { speed }, host: '127.0.0.1' });
}

export function standinEnv(s: Standin): Record<string, string> {
  return { REPLICATE_API_TOKEN: s.token, REPLICATE_BASE_URL: s.url, RUNNER_ENABLED: 'true' };
}

export interface Received {
  event: string;
  payload: any;
}

/** The official phoenix client in Node, over `ws`. */
export function phoenixSocket(baseUrl: string, token?: string): Socket {
  const socket = new Socket(`${baseUrl.replace(/^http/, 'ws')}/socket`, {
    transport: WebSocket as unknown as typeof globalThis.WebSocket,
    params: token ? { token } : {},
    reconnectAfterMs: () => 50,
    rejoinAfterMs: () => 50,
    heartbeatIntervalMs: 30_000,
  } as any);
  socket.connect();
  return socket;
}

export const TASK_EVENTS = ['status', 'progress', 'text_delta', 'image_response', 'video_response', 'text_response'];

/**
 * Join a channel, recording every task event it receives. `params` may be a function of the
 * events recorded so far: phoenix.js calls it again on every rejoin.
 */
export function joinRecording(
  socket: Socket,
  topic: string,
  params: Record<string, unknown> | ((events: Received[]) => Record<string, unknown>) = {},
): { channel: Channel; events: Received[]; joined: Promise<any> } {
  const events: Received[] = [];
  const channel = socket.channel(topic, typeof params === 'function' ? () => params(events) : params);
  for (const ev of TASK_EVENTS)
    channel.on(ev, (payload) => {
      events.push({ event: ev, payload });
    });
  const joined = new Promise<any>((resolve, reject) => {
    channel
      .join(5000)
      .receive('ok', resolve)
      .receive('error', (r) => reject(Object.assign(new Error(`join refused: ${JSON.stringify(r)}`), { response: r })))
      .receive('timeout', () => reject(new Error('join timed out')));
  });
  return { channel, events, joined };
}

/** joinRecording whose every (re)join asks for what came after the last event it recorded. */
export function joinResuming(socket: Socket, topic: string): ReturnType<typeof joinRecording> {
  return joinRecording(socket, topic, (events) => ({
    last_seq: events.reduce((last, e) => Math.max(last, e.payload.seq as number), 0),
  }));
}

export function push(
  channel: Channel,
  event: string,
  payload: Record<string, unknown>,
): Promise<{ status: string; response: any }> {
  return new Promise((resolve, reject) => {
    channel
      .push(event, payload, 5000)
      .receive('ok', (response) => resolve({ status: 'ok', response }))
      .receive('error', (response) => resolve({ status: 'error', response }))
      .receive('timeout', () => reject(new Error(`${event} timed out`)));
  });
}

/** Every received event names the task, and the seqs run 1..n (or from..n) without gap or repeat. */
export function expectCleanSequence(events: Received[], taskId: string, from = 1): void {
  const seqs = events.map((e) => e.payload.seq);
  expect(seqs).toEqual(Array.from({ length: seqs.length }, (_, i) => from + i));
  for (const e of events) expect(e.payload.task_id).toBe(taskId);
}

/**
 * Two processes on one PostgreSQL schema: `front`, the clients' gateway, runs no tasks, and
 * `worker`, a child process, runs them all (so every event a client sees crossed processes).
 */
export async function startFrontAndWorker(
  standin: Standin,
): Promise<{ tdb: TestDb; front: TestGateway; worker: GatewayProcess; close(): Promise<void> }> {
  const tdb = await freshDb('postgres');
  const front = await startGateway('postgres', {
    auth: true,
    tdb,
    env: {
      REPLICATE_API_TOKEN: standin.token,
      REPLICATE_BASE_URL: standin.url,
      RUNNER_ENABLED: 'false',
      // A thousand sockets from one address (the cross-process suite) beside the suite's other
      // connections: over the default cap of 1000 per address, the last ones were refused (503).
      MAX_CONNECTIONS_PER_ADDRESS: '0',
    },
  });
  const worker = await spawnGateway({
    PYRE_FIXTURE_PG_URL: TEST_PG_URL!,
    PYRE_FIXTURE_PG_SCHEMA: tdb.schema!,
    PYRE_FIXTURE_RUNNER: JSON.stringify({ pollIntervalMs: 100, claimIntervalMs: 100 }),
    LOG_LEVEL: 'warn',
    AUTH_SECRET: TEST_SECRET,
    ...standinEnv(standin),
  });
  return {
    tdb,
    front,
    worker,
    close: async () => {
      await worker.stop();
      await front.close();
      await tdb.drop();
    },
  };
}
