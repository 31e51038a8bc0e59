import type { Config } from '../../config';
import type { Logger } from '../../log';
import { DEFAULT_MODELS } from '../../tasks/models';
import { WebhookRefused, type ProviderPlugin, type RunningProvider, type WebhookVerifier } from '../plugin';
import { createReplicateClient, toPrediction } from './client';
import { ProviderHealth } from './health';
import { replicateRoute } from './routes';
import { startStandin, type Standin } from './standin';
import { verifyWebhook, WebhookVerificationError } from './webhooks';

/** The Replicate settings a gateway runs with: from the config, or the demo stand-in's. */
export type ReplicateSettings = Config['replicate'];

/** The running Replicate provider, with its demo stand-in when there is one. */
export interface RunningReplicate extends RunningProvider {
  readonly demoStandin: Standin | undefined;
}

/**
 * What the demo stand-in keeps: a gateway copies a prediction's result within seconds of its end,
 * so after five minutes the stand-in forgets it; and only the last thousand requests are recorded.
 * Without this a demo left running grows by every prediction it ever ran.
 */
export const DEMO_RETENTION = { forgetAfterMs: 5 * 60_000, maxRecorded: 1000 };

/**
 * Demo mode (no REPLICATE_API_TOKEN): starts the built-in Replicate stand-in and says so loudly.
 * The stand-in starts empty, so tasks whose predictions lived in an earlier run start over
 * (`requeueLostPredictions`, run once the stand-in is up). Used by the gateway and by the
 * WORKERS=N primary, which shares one stand-in among its workers.
 */
export async function startDemoStandin(
  logger: Logger,
  tasks: { requeueLostPredictions(provider: string): Promise<unknown> },
): Promise<Standin> {
  const standin = await startStandin({
    preset: 'demo',
    host: '127.0.0.1',
    retention: DEMO_RETENTION,
    logger: logger.child({ component: 'standin' }),
  });
  logger.warn(
    { standin: standin.url },
    'DEMO MODE: REPLICATE_API_TOKEN is unset, so tasks run on the built-in Replicate stand-in (simulated results, nothing is billed)',
  );
  try {
    await tasks.requeueLostPredictions('replicate');
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

/** Standard Webhooks signatures with the account's signing secret (docs/replicate.md). */
function replicateWebhooks(secret: () => string | undefined): WebhookVerifier {
  return {
    enabled: () => secret() !== undefined,
    verify(headers, rawBody) {
      let verified;
      try {
        verified = verifyWebhook({ secret: secret()!, headers, rawBody });
      } catch (err) {
        if (err instanceof WebhookVerificationError) throw new WebhookRefused(401, err.message, err.reason);
        throw err;
      }
      try {
        return { id: verified.id, prediction: toPrediction(verified.payload) };
      } catch {
        throw new WebhookRefused(422, 'webhook body is not a prediction', 'bad_body');
      }
    },
  };
}

/**
 * Replicate: the image, video and text models of the default registry. On Replicate, or (demo
 * mode) on the built-in stand-in. With PUBLIC_URL set and no REPLICATE_WEBHOOK_SECRET, the signing
 * secret is fetched from the provider; if that fails webhooks are refused and polling carries on.
 */
export const replicateProvider: ProviderPlugin = {
  id: 'replicate',
  models: () => [...DEFAULT_MODELS],
  async start(ctx): Promise<RunningReplicate> {
    const { config, logger, closers } = ctx;
    let settings = config.replicate;
    let demoStandin: Standin | undefined;
    if (config.demoMode) {
      const standin = await startDemoStandin(logger, ctx.tasks);
      closers.push('demo stand-in', () => standin.close());
      settings = standinSettings(standin, settings);
      demoStandin = standin;
    }
    const pace = ctx.pace(config.providerBudgets);
    const client = createReplicateClient({
      token: settings.apiToken!,
      baseUrl: settings.baseUrl,
      logger: logger.child({ component: 'replicate' }),
      pace,
      ...(ctx.retry ? { retry: ctx.retry } : {}),
    });
    closers.push('provider client', () => client.close());
    let webhookSecret = settings.webhookSecret;
    if (config.publicUrl && !webhookSecret) {
      try {
        webhookSecret = await client.getWebhookSecret();
      } catch (err) {
        logger.warn(
          { err: (err as Error).message },
          'could not fetch the webhook signing secret; webhooks are refused, polling carries on',
        );
      }
    }
    const health = new ProviderHealth(client, logger);
    closers.push('provider check', () => health.stop());
    void health.check();
    return {
      id: 'replicate',
      client,
      baseUrl: settings.baseUrl,
      routeOf: replicateRoute,
      webhooks: replicateWebhooks(() => webhookSecret),
      health,
      readiness: () => ({
        ...health.current(),
        credentials: demoStandin ? 'stand-in' : 'configured',
        credential: 'REPLICATE_API_TOKEN',
      }),
      pace,
      demoStandin,
    };
  },
};
