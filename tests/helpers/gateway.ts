import { loadConfig, type Config } from '../../src/config';
import { createGateway, type Gateway } from '../../src/app';
import { silentLogger } from '../../src/log';
import { testBusEnv } from './bus';
import { freshDb, type Backend, type TestDb } from './db';

export const TEST_SECRET = 'test-secret-0123456789abcdef0123456789abcdef';

export interface TestGateway {
  gw: Gateway;
  url: string;
  tdb: TestDb;
  close(): Promise<void>;
}

/** A config as main.ts would build it, from an environment the test chooses. */
export function testConfig(env: Record<string, string> = {}): Config {
  return loadConfig({
    PORT: '0',
    HOST: '127.0.0.1',
    DATA_DIR: '/tmp/pyre-test-unused',
    RUNNER_ENABLED: 'false',
    ...env,
  });
}

/** A gateway on a free port with a fresh database. `auth: true` turns on tokens. */
export async function startGateway(
  backend: Backend,
  opts: { auth?: boolean; env?: Record<string, string>; tdb?: TestDb } = {},
): Promise<TestGateway> {
  const tdb = opts.tdb ?? (await freshDb(backend));
  const config = testConfig({
    ...(backend === 'postgres' ? testBusEnv() : {}),
    ...(opts.auth ? { AUTH_SECRET: TEST_SECRET } : {}),
    ...opts.env,
  });
  const gw = await createGateway({ config, logger: silentLogger(), db: opts.tdb ? tdb.reopen() : tdb.db });
  const url = await gw.start();
  return {
    gw,
    url,
    tdb,
    close: async () => {
      await gw.close();
      if (!opts.tdb) await tdb.drop();
    },
  };
}

/** fetch + JSON, with the status. */
export async function call(
  url: string,
  init: { method?: string; body?: unknown; raw?: string; token?: string; headers?: Record<string, string> } = {},
): Promise<{ status: number; body: any; headers: Headers }> {
  const headers: Record<string, string> = { ...(init.headers ?? {}) };
  if (init.token) headers.authorization = `Bearer ${init.token}`;
  let body: string | undefined;
  if (init.raw !== undefined) body = init.raw;
  else if (init.body !== undefined) {
    body = JSON.stringify(init.body);
    headers['content-type'] ??= 'application/json';
  }
  const res = await fetch(url, { method: init.method ?? (body !== undefined ? 'POST' : 'GET'), headers, body });
  const text = await res.text();
  let parsed: unknown = text;
  try {
    parsed = text ? JSON.parse(text) : null;
  } catch {
    /* not JSON */
  }
  return { status: res.status, body: parsed, headers: res.headers };
}
