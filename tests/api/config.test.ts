import { loadConfig } from '../../src/config';
import { configProblems } from '../helpers/config';
import { BACKENDS } from '../helpers/db';
import { call, startGateway } from '../helpers/gateway';

describe('configuration', () => {
  const problems = configProblems;

  it.each([
    [{ PORT: 'eighty' }, 'PORT'],
    [{ PORT: '70000' }, 'PORT'],
    [{ DATABASE_URL: 'mysql://x' }, 'DATABASE_URL'],
    [{ AUTH_SECRET: 'short' }, 'AUTH_SECRET'],
    [{ REPLICATE_BASE_URL: 'not a url' }, 'REPLICATE_BASE_URL'],
    [{ PUBLIC_URL: 'ftp://x' }, 'PUBLIC_URL'],
    [{ LOG_LEVEL: 'loud' }, 'LOG_LEVEL'],
    [{ HOST: '0.0.0.0' }, 'HOST'],
    [{ BUS_URL: 'postgres://x' }, 'BUS_URL'],
    [{ BUS_PREFIX: 'has space' }, 'BUS_PREFIX'],
    [{ LONGPOLL_SECRET: 'short' }, 'LONGPOLL_SECRET'],
  ])('a bad value stops start-up naming the variable: %o', (env, name) => {
    expect(problems(env)).toContain(`${name}:`);
  });

  it('defaults follow the contract', () => {
    const c = loadConfig({});
    expect(c).toMatchObject({
      port: 4000,
      host: '127.0.0.1',
      databaseUrl: undefined,
      authSecret: undefined,
      demoMode: true,
    });
    expect(c.replicate.baseUrl).toBe('https://api.replicate.com/v1');
    // No bus setting: the database's NOTIFY on PostgreSQL, none on PGlite (docs/cluster.md).
    expect(c.bus).toEqual({ url: undefined, prefix: 'pyre:' });
    expect(c.longpollSecret).toBeUndefined();
    expect(c.dataDir.endsWith('/data')).toBe(true);
  });

  it('a value that is not a number says so', () => {
    expect(problems({ PORT: 'abc' })).toContain('PORT: must be an integer');
    expect(problems({ WORKERS: '1.5' })).toContain('WORKERS: must be an integer');
  });

  it('a variable set to nothing is unset: its default applies', () => {
    const c = loadConfig({ PORT: '', HOST: ' ', LOG_LEVEL: '', RUNNER_CONCURRENCY: '', DATA_DIR: '' });
    expect(c).toMatchObject({ port: 4000, host: '127.0.0.1', logLevel: 'info' });
    expect(c.dataDir.endsWith('/data')).toBe(true);
  });

  it('with a secret, any host may be used', () => {
    expect(loadConfig({ HOST: '0.0.0.0', AUTH_SECRET: 'x'.repeat(32) }).host).toBe('0.0.0.0');
  });
});

describe.each(BACKENDS)('open mode on %s', (backend) => {
  it('every caller is the local user; a malformed Authorization header is still refused', async () => {
    const t = await startGateway(backend);
    try {
      const res = await call(`${t.url}/api/tasks`, { body: { input_data: { prompt: 'hi' } } });
      expect(res.status).toBe(202);
      const row = await t.gw.db('tasks').where({ id: res.body.task_id }).first();
      expect(row.user_id).toBe('local');
      expect((await call(`${t.url}/api/tasks`, { headers: { authorization: 'Basic abc' } })).status).toBe(401);
    } finally {
      await t.close();
    }
  });
});
