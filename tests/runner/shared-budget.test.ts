import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { migrate } from '../../src/db';
import { startStandin, type Standin } from '../../src/providers/replicate/standin';
import { freshDb, TEST_PG_URL, type TestDb } from '../helpers/db';
import { spawnGateway, type GatewayProcess } from '../helpers/gateway-process';
import { createTask, EVERY_MODEL, getTask, TERMINAL, waitFor } from './helpers';

/**
 * Issue 24, acceptance 5: the provider's create budget is the account's, kept in the database, not
 * each process's. Three gateway processes on one PostgreSQL and one stand-in that allows L creates
 * a minute, with tasks enough for several minutes of creates: no 429, and no rolling minute with
 * more than L creates. The minute is scaled down: the stand-in's clock runs SPEED times faster,
 * and the gateways' budget window is a minute / SPEED.
 */
const SPEED = 10;
const MINUTE_MS = 60_000 / SPEED;
const L = 12;
const TASKS = 36; // three minutes of creates at L a minute

(TEST_PG_URL ? describe : describe.skip)('a create budget shared by three processes (PostgreSQL)', () => {
  let standin: Standin;
  let tdb: TestDb;
  let dataDir: string;
  const procs: GatewayProcess[] = [];

  beforeAll(async () => {
    standin = await startStandin({ clock: { speed: SPEED } });
    standin.faults.rateLimits = { createPerMinute: L, otherPerMinute: 100_000 };
    for (const { providerModel: m } of EVERY_MODEL) standin.faults.timelines[m] = { queueMs: 100, processingMs: 1000 };
    tdb = await freshDb('postgres');
    dataDir = fs.mkdtempSync(path.join(os.tmpdir(), 'pyre-budget-'));
  });
  afterAll(async () => {
    await Promise.all(procs.map((p) => p.stop()));
    await standin?.close();
    await tdb?.drop();
    fs.rmSync(dataDir, { recursive: true, force: true });
  });

  it(`${TASKS} tasks on three processes: no 429, at most ${L} creates in any rolling minute`, async () => {
    await migrate(tdb.db);
    const env = {
      REPLICATE_API_TOKEN: standin.token,
      REPLICATE_BASE_URL: standin.url,
      RUNNER_ENABLED: 'true',
      DATA_DIR: dataDir,
      PROVIDER_CREATES_PER_MINUTE: String(L),
      PYRE_FIXTURE_BUDGET_WINDOW_MS: String(MINUTE_MS),
      PYRE_FIXTURE_PG_URL: TEST_PG_URL!,
      PYRE_FIXTURE_PG_SCHEMA: tdb.schema!,
      PYRE_FIXTURE_PG_POOL_MAX: '4',
      PYRE_FIXTURE_RUNNER: JSON.stringify({ pollIntervalMs: 100, pollMaxIntervalMs: 300, claimIntervalMs: 100 }),
      LOG_LEVEL: 'warn',
    };
    procs.push(...(await Promise.all([spawnGateway(env), spawnGateway(env), spawnGateway(env)])));
    const ids: string[] = [];
    for (let i = 0; i < TASKS; i++)
      ids.push(await createTask(procs[i % 3]!.url, { type: 'image', prompt: `budget #${i}` }));
    await waitFor(
      'every task ended',
      async () => {
        const tasks = await Promise.all(ids.map((id) => getTask(procs[0]!.url, id)));
        return tasks.every((t) => TERMINAL.has(t.status)) ? tasks : null;
      },
      ((TASKS / L) * MINUTE_MS + 60_000) * 2,
      250,
    );
    const tasks = await Promise.all(ids.map((id) => getTask(procs[0]!.url, id)));
    expect(tasks.map((t) => t.status)).toEqual(ids.map(() => 'succeeded'));

    const creates = standin.creates();
    expect(creates.filter((c) => c.status === 429)).toEqual([]);
    expect(creates).toHaveLength(TASKS);
    // On the stand-in's clock (the one its limit counts on): every rolling minute within L.
    const at = creates.map((c) => c.at).sort((a, b) => a - b);
    let most = 0;
    for (let i = 0; i < at.length; i++) {
      const inMinute = at.filter((t) => t >= at[i]! && t < at[i]! + 60_000).length;
      most = Math.max(most, inMinute);
    }
    expect(most).toBeLessThanOrEqual(L);
    // And the budget was used, not starved: the creates took about TASKS / L minutes.
    expect(at[at.length - 1]! - at[0]!).toBeLessThan((TASKS / L + 2) * 60_000);
  }, 300_000);
});
