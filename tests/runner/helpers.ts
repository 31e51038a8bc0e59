import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { createGateway, type Gateway, type GatewayOptions } from '../../src/app';
import { silentLogger } from '../../src/log';
import { startStandin, type Standin, type StandinOptions } from '../../src/providers/replicate/standin';
import { kindOf } from '../../src/tasks/events';
import { DEFAULT_MODELS, ModelRegistry, type ModelSpec } from '../../src/tasks/models';
import { migrate } from '../../src/db';
import { freshDb, TEST_PG_URL, type Backend, type TestDb } from '../helpers/db';
import { testBusEnv } from '../helpers/bus';
import { call, testConfig } from '../helpers/gateway';
import { freePort } from '../helpers/net';
import { spawnGateway, type GatewayProcess } from '../helpers/gateway-process';

export { waitFor } from '../helpers/wait';
export { freePort };

export { call };

/** Fast runner settings for tests: short polls, claims and leases. */
export const FAST_RUNNER = {
  pollIntervalMs: 50,
  pollMaxIntervalMs: 200,
  claimIntervalMs: 100,
  leaseMs: 2000,
  retry: { attempts: 3, baseMs: 50, maxMs: 200 },
};
export const FAST_PROVIDER_RETRY = { attempts: 6, baseMs: 20, maxMs: 200 };

export interface RunnerEnv {
  standin: Standin;
  gw: Gateway;
  url: string;
  tdb: TestDb;
  dataDir: string;
  close(): Promise<void>;
}

/** Every model of the registry as a client names it (type and model), with its provider model. */
export const EVERY_MODEL = DEFAULT_MODELS.map((m) => ({
  type: kindOf(m.taskType).kind,
  model: m.name,
  providerModel: m.providerModel,
}));

/** A model registry with some models' fields replaced (e.g. a short deadline). */
export function registryWith(overrides: Record<string, Partial<ModelSpec>>): ModelRegistry {
  return new ModelRegistry(DEFAULT_MODELS.map((m) => (overrides[m.name] ? { ...m, ...overrides[m.name] } : m)));
}

/**
 * A stand-in (virtual clock unless told) and a gateway with its runner on, pointed at it
 * through the environment as an operator would configure it.
 */
export async function startRunnerEnv(
  opts: {
    backend?: Backend;
    standin?: StandinOptions;
    env?: Record<string, string>;
    /** Listen on a fixed free port and set PUBLIC_URL to it (turns webhooks on). */
    webhooks?: boolean;
    runner?: GatewayOptions['runner'];
    registry?: ModelRegistry;
    tdb?: TestDb;
    standinInstance?: Standin;
  } = {},
): Promise<RunnerEnv> {
  const standin = opts.standinInstance ?? (await startStandin({ clock: 'virtual', ...opts.standin }));
  const tdb = opts.tdb ?? (await freshDb(opts.backend ?? 'pglite'));
  const dataDir = fs.mkdtempSync(path.join(os.tmpdir(), 'pyre-runner-'));
  const env: Record<string, string> = {
    REPLICATE_API_TOKEN: standin.token,
    REPLICATE_BASE_URL: standin.url,
    RUNNER_ENABLED: 'true',
    DATA_DIR: dataDir,
    ...(tdb.backend === 'postgres' ? testBusEnv() : {}),
    ...opts.env,
  };
  if (opts.webhooks) {
    const port = await freePort();
    env.PORT = String(port);
    env.PUBLIC_URL = `http://127.0.0.1:${port}`;
  }
  const gw = await createGateway({
    config: testConfig(env),
    logger: silentLogger(),
    db: opts.tdb ? tdb.reopen() : tdb.db,
    registry: opts.registry,
    runner: { ...FAST_RUNNER, ...opts.runner },
    providerRetry: FAST_PROVIDER_RETRY,
  });
  const url = await gw.start();
  return {
    standin,
    gw,
    url,
    tdb,
    dataDir,
    close: async () => {
      await gw.close();
      if (!opts.standinInstance) await standin.close();
      if (!opts.tdb) await tdb.drop();
      fs.rmSync(dataDir, { recursive: true, force: true });
    },
  };
}

export const TERMINAL = new Set(['succeeded', 'failed', 'canceled']);

export async function createTask(url: string, input: Record<string, unknown>): Promise<string> {
  const res = await call(`${url}/api/tasks`, { body: { input_data: input } });
  if (res.status !== 202) throw new Error(`create answered ${res.status}: ${JSON.stringify(res.body)}`);
  return res.body.task_id as string;
}

export async function getTask(url: string, id: string): Promise<any> {
  const res = await call(`${url}/api/tasks/${id}`);
  if (res.status !== 200) throw new Error(`get answered ${res.status}`);
  return res.body.data;
}

export async function events(url: string, id: string): Promise<any[]> {
  const res = await call(`${url}/api/tasks/${id}/events`);
  if (res.status !== 200) throw new Error(`events answered ${res.status}`);
  return res.body.data;
}

/**
 * Drives a virtual stand-in clock until the task ends: advance a step, let the runner poll.
 * Returns the final task.
 */
export async function runToEnd(
  env: { standin: Standin; url: string },
  id: string,
  opts: { stepMs?: number; timeoutMs?: number } = {},
): Promise<any> {
  const until = Date.now() + (opts.timeoutMs ?? 30_000);
  for (;;) {
    const t = await getTask(env.url, id);
    if (TERMINAL.has(t.status)) return t;
    if (Date.now() > until) throw new Error(`task ${id} did not end (status ${t.status})`);
    if (env.standin.clock.kind === 'virtual') await env.standin.advance(opts.stepMs ?? 500);
    await new Promise((r) => setTimeout(r, 30));
  }
}

/** The stand-in's create requests whose body carries this prompt. */
export function createsFor(standin: Standin, prompt: string) {
  return standin.creates().filter((r) => (r.body as { input?: { prompt?: unknown } } | null)?.input?.prompt === prompt);
}

/** Gateway processes on one PostgreSQL schema, for a describe block (see useProcessesOnPostgres). */
export interface ProcessesOnPostgres {
  standin: Standin;
  tdb: TestDb;
  /**
   * Two gateway processes started side by side on the schema (migrated first) with the stand-in,
   * the runner on, a shared DATA_DIR and these runner settings; `env` adds to or overrides that.
   */
  spawnTwo(env: Record<string, string>, runner: Record<string, unknown>): Promise<GatewayProcess[]>;
}

/**
 * Registers beforeAll/afterAll for a describe block: a real-time stand-in where every model queues
 * 100 ms and processes `processingMs`, a fresh PostgreSQL schema, a data dir; the processes it
 * spawns are stopped, and the schema and data dir removed, after.
 */
export function useProcessesOnPostgres(processingMs: number): ProcessesOnPostgres {
  const procs: GatewayProcess[] = [];
  let dataDir = '';
  const f: ProcessesOnPostgres = {
    standin: undefined as unknown as Standin,
    tdb: undefined as unknown as TestDb,
    spawnTwo: async (env, runner) => {
      const full = {
        REPLICATE_API_TOKEN: f.standin.token,
        REPLICATE_BASE_URL: f.standin.url,
        RUNNER_ENABLED: 'true',
        DATA_DIR: dataDir,
        PYRE_FIXTURE_PG_URL: TEST_PG_URL!,
        PYRE_FIXTURE_PG_SCHEMA: f.tdb.schema!,
        PYRE_FIXTURE_RUNNER: JSON.stringify(runner),
        ...env,
      };
      // Migrated here first, so that the two processes can start side by side.
      await migrate(f.tdb.db);
      const two = await Promise.all([spawnGateway(full), spawnGateway(full)]);
      procs.push(...two);
      return two;
    },
  };
  beforeAll(async () => {
    f.standin = await startStandin({ clock: { speed: 1 } });
    for (const { providerModel: m } of EVERY_MODEL) f.standin.faults.timelines[m] = { queueMs: 100, processingMs };
    f.tdb = await freshDb('postgres');
    dataDir = fs.mkdtempSync(path.join(os.tmpdir(), 'pyre-processes-'));
  });
  afterAll(async () => {
    await Promise.all(procs.map((p) => p.stop()));
    await f.standin?.close();
    await f.tdb?.drop();
    fs.rmSync(dataDir, { recursive: true, force: true });
  });
  return f;
}
