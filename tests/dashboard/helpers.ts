import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { createGateway, type Gateway } from '../../src/app';
import { silentLogger } from '../../src/log';
import { startStandin, STANDIN_MODELS, type Standin } from '../../src/providers/replicate/standin';
import { freshDb, type TestDb } from '../helpers/db';
import { TEST_SECRET, testConfig } from '../helpers/gateway';

export const CHROMIUM = '/usr/bin/chromium';
export const CHROMIUM_ARGS = [
  '--headless',
  '--no-sandbox',
  '--disable-gpu',
  '--disable-quic',
  '--no-first-run',
  '--disable-background-networking',
  '--disable-component-update',
  '--disable-sync',
];
export const ARTIFACTS = path.join(__dirname, '..', '..', 'test-artifacts');

export interface DemoGateway {
  gw: Gateway;
  url: string;
  standin: Standin;
  /** A signed token for the user, valid for ttlSeconds (600 unless told). */
  token(user: string, ttlSeconds?: number): string;
  close(): Promise<void>;
}

/**
 * A gateway on a Replicate stand-in in real time, as in demo mode, but with imagen
 * reporting a progress bar in ten steps over its few seconds (so a bar can be seen moving);
 * `imagenBar: false` leaves imagen as it is (no progress, as the real model reports none).
 */
export async function startDemoGateway(
  opts: { auth?: boolean; env?: Record<string, string>; imagenBar?: boolean } = {},
): Promise<DemoGateway> {
  const imagen = STANDIN_MODELS['google/imagen-4-fast']!;
  const saved = { progress: imagen.progress, steps: imagen.steps, timeline: imagen.timeline };
  if (opts.imagenBar !== false) {
    imagen.progress = 'one-bar';
    imagen.steps = 10;
  }
  imagen.timeline = { queueMs: 300, processingMs: 2500 };
  const standin = await startStandin({ clock: { speed: 1 }, host: '127.0.0.1' });
  const tdb: TestDb = await freshDb('pglite');
  const dataDir = fs.mkdtempSync(path.join(os.tmpdir(), 'pyre-dash-'));
  const config = testConfig({
    REPLICATE_API_TOKEN: standin.token,
    REPLICATE_BASE_URL: standin.url,
    RUNNER_ENABLED: 'true',
    DATA_DIR: dataDir,
    ...(opts.auth ? { AUTH_SECRET: TEST_SECRET } : {}),
    ...opts.env,
  });
  const gw = await createGateway({
    config,
    logger: silentLogger(),
    db: tdb.db,
    runner: { pollIntervalMs: 100, claimIntervalMs: 100 },
  });
  const url = await gw.start();
  return {
    gw,
    url,
    standin,
    token: (user, ttlSeconds = 600) => gw.auth.signer!.mint(user, ttlSeconds),
    close: async () => {
      await gw.close();
      await standin.close();
      await tdb.drop();
      fs.rmSync(dataDir, { recursive: true, force: true });
      Object.assign(imagen, saved);
    },
  };
}
