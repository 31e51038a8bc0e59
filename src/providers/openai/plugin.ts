import type { ProviderPlugin, RunningProvider } from '../plugin';
import { OpenAIClient } from './client';
import { openaiModels } from './models';
import { startOpenAIStandin } from './standin';

/** Request paths as metrics labels. */
function openaiRoute(path: string): string {
  return /\/chat\/completions$/.test(path.split('?')[0]!) ? '/chat/completions' : 'other';
}

/**
 * OpenAI-compatible chat completions: the text models OPENAI_MODELS lists, on OPENAI_BASE_URL
 * with OPENAI_API_KEY; without a key, on the built-in stand-in (demo; in demo mode with neither
 * set, the models are DEMO_OPENAI_MODELS). No webhooks: the stream is
 * the completion.
 */
export const openaiProvider: ProviderPlugin = {
  id: 'openai',
  models: (config) => openaiModels(config.openai),
  async start(ctx): Promise<RunningProvider> {
    const { config, logger, closers } = ctx;
    let { baseUrl, apiKey } = config.openai;
    const onStandin = apiKey === undefined;
    if (apiKey === undefined) {
      const standin = await startOpenAIStandin({ wordMs: 60, logger: logger.child({ component: 'openai-standin' }) });
      closers.push('openai stand-in', () => standin.close());
      ({ url: baseUrl, apiKey } = standin);
      logger.warn(
        { standin: baseUrl, models: config.openai.models.map((m) => m.name) },
        'DEMO MODE: OPENAI_API_KEY is unset, so the OpenAI-compatible models run on the built-in chat completions stand-in (made-up text, nothing is billed)',
      );
    }
    const pace = ctx.pace(config.providerBudgets);
    const client = new OpenAIClient({
      token: apiKey,
      baseUrl,
      pace,
      logger: logger.child({ component: 'openai' }),
      ...(ctx.retry ? { retry: ctx.retry } : {}),
    });
    closers.push('openai client', () => client.close());
    return {
      id: 'openai',
      client,
      baseUrl,
      routeOf: openaiRoute,
      pace,
      // No credential check: the key and base URL were validated at start; a refused key fails
      // its tasks with provider_unavailable (and is logged).
      readiness: () => ({
        state: 'configured',
        detail: null,
        credentials: onStandin ? 'stand-in' : 'configured',
        credential: 'OPENAI_API_KEY',
      }),
    };
  },
};
