import { loadConfig } from '../../src/config';
import { configProblems } from '../helpers/config';
import { createGateway } from '../../src/app';
import { silentLogger } from '../../src/log';
import { freshDb } from '../helpers/db';
import { startGateway, testConfig, call, type TestGateway } from '../helpers/gateway';
import { waitFor } from '../helpers/wait';

/** OPENAI_* are read and checked at start; every problem names its variable. */
describe('OpenAI-compatible configuration', () => {
  const problems = configProblems;

  it.each([
    [{ OPENAI_BASE_URL: 'not a url' }, 'OPENAI_BASE_URL:'],
    [{ OPENAI_BASE_URL: 'ftp://x/v1' }, 'OPENAI_BASE_URL:'],
    [{ OPENAI_MODELS: 'a,,b' }, 'OPENAI_MODELS: has an empty entry'],
    [{ OPENAI_MODELS: 'bad name' }, 'OPENAI_MODELS: "bad name" is not a model name'],
    [{ OPENAI_MODELS: 'a=' }, 'OPENAI_MODELS: "a=": the model id after = is empty'],
    [{ OPENAI_MODELS: 'a,a=b' }, 'OPENAI_MODELS: names a twice'],
    [{ OPENAI_API_KEY: 'sk-x' }, 'OPENAI_MODELS: OPENAI_API_KEY is set but no model is'],
  ])('%o is refused: %s', (env, said) => {
    expect(problems(env)).toContain(said);
  });

  it('reads the models as name or name=id, and the base URL without a trailing slash', () => {
    const c = loadConfig({
      OPENAI_BASE_URL: 'http://127.0.0.1:11434/v1/',
      OPENAI_API_KEY: 'ollama',
      OPENAI_MODELS: 'llama3.1:8b, fast=qwen2.5:0.5b-instruct',
    });
    expect(c.openai).toEqual({
      baseUrl: 'http://127.0.0.1:11434/v1',
      apiKey: 'ollama',
      models: [
        { name: 'llama3.1:8b', id: 'llama3.1:8b' },
        { name: 'fast', id: 'qwen2.5:0.5b-instruct' },
      ],
    });
    // With a provider token (not demo mode) and no OPENAI_*, the provider is off.
    expect(loadConfig({ REPLICATE_API_TOKEN: 'r8_x' }).openai.models).toEqual([]);
  });

  it('demo mode with no OPENAI_* serves the demo list on the stand-in; any OPENAI_MODELS or key replaces it', () => {
    expect(loadConfig({}).openai).toMatchObject({
      apiKey: undefined,
      models: [{ name: 'gpt-4o-mini', id: 'gpt-4o-mini' }],
    });
    // A WORKERS=N worker on its primary's stand-in is in demo mode too.
    expect(loadConfig({ REPLICATE_API_TOKEN: 'r8_standin', PYRE_SHARED_DEMO_STANDIN: 'true' }).openai.models).toEqual([
      { name: 'gpt-4o-mini', id: 'gpt-4o-mini' },
    ]);
    expect(loadConfig({ OPENAI_MODELS: 'demo-chat' }).openai.models).toEqual([{ name: 'demo-chat', id: 'demo-chat' }]);
    expect(problems({ OPENAI_API_KEY: 'sk-x' })).toContain('OPENAI_MODELS: OPENAI_API_KEY is set but no model is');
  });

  it("a name another provider's model has stops the gateway at start, naming OPENAI_MODELS", async () => {
    const tdb = await freshDb('pglite');
    try {
      const config = testConfig({ OPENAI_API_KEY: 'sk-x', OPENAI_MODELS: 'gpt-4.1' });
      await expect(createGateway({ config, logger: silentLogger(), db: tdb.db })).rejects.toThrow(
        /OPENAI_MODELS: gpt-4\.1 is already a Replicate model's name/,
      );
    } finally {
      await tdb.drop();
    }
  });

  /** A task on `model` succeeds with some text, run by the built-in OpenAI-compatible stand-in. */
  async function runsOnTheDemoStandin(g: TestGateway, model: string) {
    const res = await call(`${g.url}/api/tasks`, { body: { input_data: { model, prompt: 'hi' } } });
    expect(res.status).toBe(202);
    const t = await waitFor(
      'the demo completion',
      async () => {
        const cur = (await call(`${g.url}/api/tasks/${res.body.task_id}`)).body.data;
        return cur.status === 'succeeded' ? cur : null;
      },
      30_000,
    );
    expect(t.output.text.length).toBeGreaterThan(0);
    expect(g.gw.providers.get('openai')!.baseUrl).toMatch(/^http:\/\/127\.0\.0\.1:\d+\/v1$/);
  }

  it('without OPENAI_API_KEY the models run on the built-in stand-in (demo mode)', async () => {
    const g = await startGateway('pglite', { env: { OPENAI_MODELS: 'demo-chat', RUNNER_ENABLED: 'true' } });
    try {
      await runsOnTheDemoStandin(g, 'demo-chat');
    } finally {
      await g.close();
    }
  });

  it("a newcomer's demo gateway (no OPENAI_*) shows both providers and runs the demo OpenAI model on its stand-in", async () => {
    const g = await startGateway('pglite', { env: { RUNNER_ENABLED: 'true' } });
    try {
      const models = (await call(`${g.url}/api/models`)).body.data as { name: string; provider: string }[];
      expect(new Set(models.map((m) => m.provider))).toEqual(new Set(['replicate', 'openai']));
      expect(models.filter((m) => m.provider === 'openai').map((m) => m.name)).toEqual(['gpt-4o-mini']);
      // /readyz lists both, each on its stand-in.
      const ready = await waitFor('the stand-in checked', async () => {
        const r = await call(`${g.url}/readyz`);
        return r.body?.providers?.replicate?.state === 'ok' ? r : null;
      });
      expect(ready.status).toBe(200);
      expect(ready.body.providers).toEqual({
        replicate: { state: 'ok', credentials: 'stand-in' },
        openai: { state: 'configured', credentials: 'stand-in' },
      });
      await runsOnTheDemoStandin(g, 'gpt-4o-mini');
    } finally {
      await g.close();
    }
  });
});
