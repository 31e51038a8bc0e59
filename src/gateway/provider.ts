import type { Config } from '../config';
import type { Logger } from '../log';
import { ProviderPace } from '../providers/replicate/pace';
import { createReplicateClient, type ReplicateClient } from '../providers/replicate/client';
import { startStandin, type Standin } from '../providers/replicate/standin';
import type { PartContext } from './context';

/** The provider settings a gateway runs with: from the config, or the demo stand-in's. */
export type ReplicateSettings = Config['replicate'];

export interface ProviderParts {
  provider: ReplicateClient;
  /** The provider API's base URL (the stand-in's in demo mode). */
  baseUrl: string;
  /** The secret webhooks are signed with, once known; undefined: webhooks are refused. */
  webhookSecret(): string | undefined;
  /** The in-process Replicate stand-in, in demo mode. */
  demoStandin: Standin | undefined;
}

/**
 * Demo mode (no REPLICATE_API_TOKEN): starts the built-in Replicate stand-in and says so loudly.
 * The stand-in starts empty, so tasks whose predictions lived in an earlier run start over
 * (`requeueLostPredictions`, run once the stand-in is up). Used by the gateway and by the
 * WORKERS=N primary, which shares one stand-in among its workers.
 */
export async function startDemoStandin(
  logger: Logger,
  tasks: { requeueLostPredictions(): Promise<unknown> },
): Promise<Standin> {
  const standin = await startStandin({
    preset: 'demo',
    host: '127.0.0.1',
    logger: logger.child({ component: 'standin' }),
  });
  logger.warn(
    { standin: standin.url },
    'DEMO MODE: REPLICATE_API_TOKEN is unset, so tasks run on the built-in Replicate stand-in (simulated results, nothing is billed)',
  );
  try {
    await tasks.requeueLostPredictions();
  } catch (err) {
    await standin.close();
    throw err;
  }
  return standin;
}

/** The provider settings that point at a stand-in. */
export function standinSettings(standin: Standin, base: ReplicateSettings): ReplicateSettings {
  return { ...base, apiToken: standin.token, baseUrl: standin.url, webhookSecret: standin.webhookSecret };
}

/**
 * The provider client, on Replicate or (demo mode) on the built-in stand-in. With PUBLIC_URL set
 * and no REPLICATE_WEBHOOK_SECRET, the signing secret is fetched from the provider; if that fails
 * webhooks are refused and polling carries on.
 */
export async function startProvider(
  ctx: PartContext,
  opts: {
    tasks: { requeueLostPredictions(): Promise<unknown> };
    retry?: { attempts: number; baseMs: number; maxMs: number };
  },
): Promise<ProviderParts> {
  const { config, logger, closers } = ctx;
  let settings = config.replicate;
  let demoStandin: Standin | undefined;
  if (config.demoMode) {
    const standin = await startDemoStandin(logger, opts.tasks);
    closers.push('demo stand-in', () => standin.close());
    settings = standinSettings(standin, settings);
    demoStandin = standin;
  }
  const provider = createReplicateClient({
    token: settings.apiToken!,
    baseUrl: settings.baseUrl,
    logger: logger.child({ component: 'replicate' }),
    pace: new ProviderPace(config.providerBudgets),
    ...(opts.retry ? { retry: opts.retry } : {}),
  });
  closers.push('provider client', () => provider.close());
  let webhookSecret = settings.webhookSecret;
  if (config.publicUrl && !webhookSecret) {
    try {
      webhookSecret = await provider.getWebhookSecret();
    } catch (err) {
      logger.warn(
        { err: (err as Error).message },
        'could not fetch the webhook signing secret; webhooks are refused, polling carries on',
      );
    }
  }
  return { provider, baseUrl: settings.baseUrl, webhookSecret: () => webhookSecret, demoStandin };
}
