import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fastStandin, joinRecording, phoenixSocket, standinEnv, waitFor } from '../channels/helpers';
import type { Standin } from '../../src/providers/replicate/standin';
import { call, startGateway, type TestGateway } from '../helpers/gateway';

/** One sample of a Prometheus text exposition: `name{labels} value`. */
function sample(text: string, name: string, labels = ''): number | undefined {
  const line = text.split('\n').find((l) => l.startsWith(`${name}${labels ? `{${labels}}` : ''} `));
  return line === undefined ? undefined : Number(line.slice(line.lastIndexOf(' ') + 1));
}

describe('GET /metrics', () => {
  let standin: Standin;
  let g: TestGateway;
  const dataDir = fs.mkdtempSync(path.join(os.tmpdir(), 'pyre-metrics-'));

  beforeAll(async () => {
    standin = await fastStandin(4);
    g = await startGateway('pglite', {
      auth: true,
      env: { ...standinEnv(standin), DATA_DIR: dataDir },
    });
  });

  afterAll(async () => {
    await g?.close();
    await standin?.close();
    fs.rmSync(dataDir, { recursive: true, force: true });
  });

  test('reports sockets, channels, joins, messages, tasks by state, the runner and provider calls', async () => {
    const scrape = async () => {
      const res = await fetch(`${g.url}/metrics`);
      expect(res.status).toBe(200);
      expect(res.headers.get('content-type')).toMatch(/^text\/plain; version=0\.0\.4/);
      return res.text();
    };
    const empty = await scrape();
    expect(sample(empty, 'pyre_realtime_sockets')).toBe(0);
    expect(sample(empty, 'pyre_tasks', 'status="queued"')).toBe(0);
    expect(sample(empty, 'pyre_realtime_slow_client_disconnects_total')).toBe(0);
    expect(sample(empty, 'pyre_runner_active_tasks')).toBe(0);
    expect(empty).toMatch(/^# TYPE pyre_channel_joins_total counter$/m);
    expect(empty).toMatch(/^# TYPE pyre_tasks gauge$/m);
    expect(empty).toMatch(/^process_cpu_user_seconds_total /m);

    const token = g.gw.auth.signer!.mint('mia');
    const socket = phoenixSocket(g.url, token);
    try {
      const feed = joinRecording(socket, 'tasks:mia');
      await feed.joined;
      const res = await call(`${g.url}/api/tasks`, { body: { input_data: { type: 'image', prompt: 'a cat' } }, token });
      expect(res.status).toBe(202);
      await waitFor('the image', () => feed.events.find((e) => e.event === 'image_response'), 30_000);

      // The tasks gauge is cached for a few seconds; wait until it has the finished task.
      const text = await waitFor(
        'the succeeded count',
        async () => {
          const t = await scrape();
          return sample(t, 'pyre_tasks', 'status="succeeded"') === 1 ? t : undefined;
        },
        15_000,
      );
      expect(sample(text, 'pyre_realtime_sockets')).toBe(1);
      expect(sample(text, 'pyre_channels')).toBe(1);
      expect(sample(text, 'pyre_channel_joins_total')).toBeGreaterThanOrEqual(1);
      expect(sample(text, 'pyre_realtime_messages_in_total')).toBeGreaterThanOrEqual(1);
      expect(sample(text, 'pyre_realtime_messages_out_total')).toBeGreaterThanOrEqual(feed.events.length);
      expect(sample(text, 'pyre_queue_depth')).toBe(0);
      expect(sample(text, 'pyre_tasks', 'status="queued"')).toBe(0);
      // Provider calls were timed: one create, and the polls of the prediction.
      expect(
        sample(
          text,
          'pyre_provider_request_duration_seconds_count',
          'provider="replicate",method="POST",route="/models/:owner/:name/predictions",status="201"',
        ),
      ).toBe(1);
      expect(
        sample(
          text,
          'pyre_provider_request_duration_seconds_count',
          'provider="replicate",method="GET",route="/predictions/:id",status="200"',
        ),
      ).toBeGreaterThanOrEqual(1);
      expect(text).toMatch(/^# TYPE pyre_provider_request_failures_total counter$/m);
    } finally {
      socket.disconnect();
    }
  });
});
