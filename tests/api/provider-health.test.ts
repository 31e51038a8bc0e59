import { Writable } from 'node:stream';
import { createGateway, type Gateway } from '../../src/app';
import { createLogger } from '../../src/log';
import { startStandin, type Standin } from '../../src/providers/replicate/standin';
import { BACKENDS, freshDb, type TestDb } from '../helpers/db';
import { call, testConfig } from '../helpers/gateway';
import { waitFor } from '../helpers/wait';

/** Issue 14, item 9: REPLICATE_API_TOKEN is checked at start, logged, and /readyz reports it. */
describe.each(BACKENDS)('provider credentials on %s', (backend) => {
  let standin: Standin;
  // One database for the block's gateways, one after the other (credentials are what differs).
  let tdb: TestDb;
  beforeAll(async () => {
    standin = await startStandin({ clock: 'virtual' });
    tdb = await freshDb(backend);
  });
  afterAll(async () => {
    await standin?.close();
    await tdb?.drop();
  });

  /** A gateway with this token and base URL, its log lines collected. */
  async function gatewayWith(
    token: string,
    baseUrl: string,
    env: Record<string, string> = {},
  ): Promise<{ gw: Gateway; url: string; lines: any[]; close(): Promise<void> }> {
    const lines: any[] = [];
    const sink = new Writable({
      write(chunk, _enc, cb) {
        for (const l of chunk.toString().split('\n').filter(Boolean)) lines.push(JSON.parse(l));
        cb();
      },
    });
    const gw = await createGateway({
      config: testConfig({ REPLICATE_API_TOKEN: token, REPLICATE_BASE_URL: baseUrl, ...env }),
      logger: createLogger({ level: 'info', destination: sink }),
      db: tdb.db,
      providerRetry: { attempts: 2, baseMs: 10, maxMs: 10 },
    });
    const url = await gw.start();
    return {
      gw,
      url,
      lines,
      close: () => gw.close(),
    };
  }

  it('the stand-in answers GET /v1/account for its token and 401 for another', async () => {
    const good = await call(`${standin.url}/account`, { token: standin.token });
    expect(good.status).toBe(200);
    expect(good.body).toMatchObject({ username: expect.any(String) });
    const bad = await call(`${standin.url}/account`, { token: 'r8_wrong' });
    expect(bad.status).toBe(401);
    expect(bad.body).toMatchObject({ title: 'Unauthenticated' });
  });

  it('a wrong token: one clear error line at start, /readyz 503 naming the provider', async () => {
    const g = await gatewayWith('r8_wrong_token', standin.url);
    try {
      const ready = await waitFor('readyz reports the refused token', async () => {
        const r = await call(`${g.url}/readyz`);
        return r.body?.provider === 'unauthorized' ? r : null;
      });
      expect(ready.status).toBe(503);
      expect(ready.body.errors.detail).toMatch(/provider refused REPLICATE_API_TOKEN/);
      expect(ready.body.providers.replicate).toMatchObject({ state: 'unauthorized', credentials: 'configured' });
      expect(ready.body.database).toBe('ok');
      const errors = g.lines.filter((l) => l.level >= 50 && l.msg !== 'request');
      expect(errors).toHaveLength(1);
      expect(errors[0].msg).toMatch(/REPLICATE_API_TOKEN was refused by Replicate/);
      expect(JSON.stringify(g.lines)).not.toContain('r8_wrong_token');
    } finally {
      await g.close();
    }
  });

  it('a good token: /readyz 200 with provider ok', async () => {
    const g = await gatewayWith(standin.token, standin.url);
    try {
      const ready = await waitFor('provider checked', async () => {
        const r = await call(`${g.url}/readyz`);
        return r.body?.provider === 'ok' ? r : null;
      });
      expect(ready.status).toBe(200);
      expect(g.lines.some((l) => l.msg === 'provider token accepted')).toBe(true);
    } finally {
      await g.close();
    }
  });

  it('/readyz lists every provider by id, each from its own readiness (no network call per probe)', async () => {
    // The OpenAI-compatible endpoint is unreachable: it is not called, its configuration is what it reports.
    const g = await gatewayWith(standin.token, standin.url, {
      OPENAI_API_KEY: 'sk-test',
      OPENAI_MODELS: 'oai-chat',
      OPENAI_BASE_URL: 'http://127.0.0.1:1/v1',
    });
    try {
      const ready = await waitFor('provider checked', async () => {
        const r = await call(`${g.url}/readyz`);
        return r.body?.providers?.replicate?.state === 'ok' ? r : null;
      });
      expect(ready.status).toBe(200);
      expect(ready.body.providers).toEqual({
        replicate: { state: 'ok', credentials: 'configured' },
        openai: { state: 'configured', credentials: 'configured' },
      });
      expect(ready.body.provider).toBe('ok');
    } finally {
      await g.close();
    }
  });

  it('an unreachable provider: /readyz stays 200 and says unreachable; a warning is logged', async () => {
    const g = await gatewayWith(standin.token, 'http://127.0.0.1:1/v1');
    try {
      const ready = await waitFor('provider checked', async () => {
        const r = await call(`${g.url}/readyz`);
        return r.body?.provider === 'unreachable' ? r : null;
      });
      expect(ready.status).toBe(200);
      expect(g.lines.some((l) => l.level === 40 && /Replicate is not reachable/.test(l.msg))).toBe(true);
    } finally {
      await g.close();
    }
  });
});
