import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { startStandin, type Standin } from '../../src/providers/replicate/standin';
import { BACKENDS, freshDb, TEST_PG_URL, type TestDb } from '../helpers/db';
import { call, createTask, createsFor, events, EVERY_MODEL, freePort, waitFor } from './helpers';
import { spawnGateway, type GatewayProcess } from '../helpers/gateway-process';

/**
 * Acceptance 4 of issue 4: `kill -9` of a gateway process while its tasks run, then a restart
 * on the same database: every task reaches an end, and the stand-in saw exactly one create
 * that made a prediction per task, also when create answers were lost (a 5xx, or a dropped
 * connection, after the stand-in had created the prediction).
 */

async function listAll(url: string): Promise<any[]> {
  const res = await call(`${url}/api/tasks?limit=200`);
  if (res.status !== 200) throw new Error(`list answered ${res.status}`);
  return res.body.data;
}

describe.each(BACKENDS)('runner on %s: kill -9 and restart', (backend) => {
  let standin: Standin;
  let tdb: TestDb | undefined;
  let dataDir: string;
  const procs: GatewayProcess[] = [];

  beforeAll(async () => {
    standin = await startStandin({ clock: { speed: 1 } });
    for (const { providerModel: m } of EVERY_MODEL) standin.faults.timelines[m] = { queueMs: 300, processingMs: 5000 };
    dataDir = fs.mkdtempSync(path.join(os.tmpdir(), 'pyre-crash-'));
    if (backend === 'postgres') tdb = await freshDb('postgres');
  });
  afterAll(async () => {
    for (const p of procs) await p.kill9();
    await standin?.close();
    await tdb?.drop();
    fs.rmSync(dataDir, { recursive: true, force: true });
  });

  // The restarted process listens where the killed one did, as a restarted service would, so
  // the file URLs either process stored stay good.
  let port = 0;
  const gatewayEnv = (): Record<string, string> => ({
    PORT: String(port),
    REPLICATE_API_TOKEN: standin.token,
    REPLICATE_BASE_URL: standin.url,
    RUNNER_ENABLED: 'true',
    RUNNER_CONCURRENCY: '8',
    DATA_DIR: dataDir,
    PYRE_FIXTURE_RUNNER: JSON.stringify({
      leaseMs: 1500,
      pollIntervalMs: 100,
      claimIntervalMs: 200,
      retry: { attempts: 5, baseMs: 100, maxMs: 500 },
    }),
    ...(backend === 'postgres' ? { PYRE_FIXTURE_PG_URL: TEST_PG_URL!, PYRE_FIXTURE_PG_SCHEMA: tdb!.schema! } : {}),
  });

  it('every task ends after a kill -9 mid-run, with exactly one prediction each', async () => {
    port = await freePort();
    const first = await spawnGateway(gatewayEnv());
    procs.push(first);
    // The first creates lose their answers after the stand-in made the prediction.
    standin.faults.inject({ op: 'create', times: 2, action: { kind: 'create_then_status', status: 500 } });
    standin.faults.inject({ op: 'create', times: 2, action: { kind: 'create_then_drop' } });

    const tasks: Array<{ id: string; prompt: string; type: string }> = [];
    for (let i = 0; i < 12; i++) {
      const m = EVERY_MODEL[i % EVERY_MODEL.length]!;
      const prompt = `crash test ${backend} #${i} (${m.model})`;
      tasks.push({ id: await createTask(first.url, { type: m.type, model: m.model, prompt }), prompt, type: m.type });
    }
    // Eight run at once (RUNNER_CONCURRENCY); wait until they all have predictions, then kill.
    await waitFor(
      'eight predictions',
      () => tasks.filter((t) => createsFor(standin, t.prompt).some((c) => c.predictionId)).length >= 8,
      60_000,
    );
    expect(
      standin.creates().filter((c) => c.fault === 'create_then_status' || c.fault === 'create_then_drop'),
    ).toHaveLength(4);
    // Killed while tasks run: several are mid-prediction, the rest still queued.
    const before = await listAll(first.url);
    expect(before.filter((t) => t.status === 'processing').length).toBeGreaterThanOrEqual(4);
    await first.kill9();

    const second = await spawnGateway(gatewayEnv());
    procs.push(second);
    const all = await waitFor(
      'every task to end',
      async () => {
        const list = await listAll(second.url);
        return list.length === tasks.length && list.every((t) => ['succeeded', 'failed', 'canceled'].includes(t.status))
          ? list
          : null;
      },
      90_000,
    );

    for (const t of tasks) {
      const task = all.find((x) => x.id === t.id)!;
      expect({ prompt: t.prompt, status: task.status, error: task.error }).toEqual({
        prompt: t.prompt,
        status: 'succeeded',
        error: null,
      });
      const made = createsFor(standin, t.prompt).filter((c) => c.predictionId);
      expect({ prompt: t.prompt, predictions: made.length }).toEqual({ prompt: t.prompt, predictions: 1 });
      const ev = await events(second.url, t.id);
      expect(ev.map((e) => e.seq)).toEqual(ev.map((_, i) => i + 1));
      expect(ev.filter((e) => e.event === `${t.type}_response`)).toHaveLength(1);
      if (t.type === 'text') {
        expect(
          ev
            .filter((e) => e.event === 'text_delta')
            .map((e) => e.payload.delta)
            .join(''),
        ).toBe(task.output.text);
      } else {
        const res = await fetch(task.output.urls[0]);
        expect(res.status).toBe(200);
      }
    }
    // Nothing was created that no task owns.
    expect(standin.creates().filter((c) => c.predictionId)).toHaveLength(tasks.length);
    // The second process adopted or resumed; it logged no second create for the first eight.
    await second.stop();
  }, 240_000);
});
