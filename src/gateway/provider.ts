import type { Config } from '../config';
import type { Logger } from '../log';
import { ProviderPace } from '../providers/replicate/pace';
import { createReplicateClient, type ReplicateClient } from '../providers/replicate/client';
import { startStandin, type Standin } from '../providers/replicate/standin';
import { isProviderError } from '../providers/types';
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
  /** Whether the provider takes our token (checked at start, in the background). */
  health: ProviderHealth;
}

/**
 * What the demo stand-in keeps: a gateway copies a prediction's result within seconds of its end,
 * so after five minutes the stand-in forgets it; and only the last thousand requests are recorded.
 * Without this a demo left running grows by every prediction it ever ran (issue 23, item 11).
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
  tasks: { requeueLostPredictions(): Promise<unknown> },
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
  const health = new ProviderHealth(provider, logger);
  closers.push('provider check', () => health.stop());
  void health.check();
  return { provider, baseUrl: settings.baseUrl, webhookSecret: () => webhookSecret, demoStandin, health };
}

/** What the last check of the provider's credentials found (GET /v1/account). */
export type ProviderState = 'checking' | 'ok' | 'unauthorized' | 'unreachable';

/**
 * REPLICATE_API_TOKEN, checked at start with a cheap authenticated call, so that a wrong token is
 * said once, clearly, before any task fails on it; /readyz reports the state. A provider that was
 * not ok is checked again (at most every `recheckMs`) when /readyz asks.
 */
export class ProviderHealth {
  state: ProviderState = 'checking';
  /** The provider's answer when not ok (for operators: the log and /readyz). */
  detail: string | null = null;
  private checkedAt = 0;
  private running: Promise<void> | null = null;
  private readonly stopped = new AbortController();

  constructor(
    private readonly client: Pick<ReplicateClient, 'account'>,
    private readonly logger: Logger,
    private readonly opts: { timeoutMs?: number; recheckMs?: number } = {},
  ) {}

  /** Check now (one check at a time); logs when the state changes. */
  check(): Promise<void> {
    this.running ??= this.run().finally(() => {
      this.running = null;
    });
    return this.running;
  }

  /** Abandons a check in flight (the gateway is stopping). */
  stop(): void {
    this.stopped.abort();
  }

  /** The state for /readyz; starts a new check in the background when it was not ok a while ago. */
  current(): { state: ProviderState; detail: string | null } {
    if (
      this.state !== 'ok' &&
      !this.stopped.signal.aborted &&
      Date.now() - this.checkedAt > (this.opts.recheckMs ?? 30_000)
    )
      void this.check();
    return { state: this.state, detail: this.detail };
  }

  private async run(): Promise<void> {
    const before = this.state;
    try {
      const signal = AbortSignal.any([AbortSignal.timeout(this.opts.timeoutMs ?? 5000), this.stopped.signal]);
      const who = await this.client.account({ signal });
      this.state = 'ok';
      this.detail = null;
      if (before !== 'ok')
        this.logger.info({ provider: 'replicate', account: who.username }, 'provider token accepted');
    } catch (err) {
      if (this.stopped.signal.aborted) return;
      const e = err as { status?: number | null; message?: string; name?: string };
      const refused = isProviderError(err) && (e.status === 401 || e.status === 403);
      this.state = refused ? 'unauthorized' : 'unreachable';
      this.detail = e.name === 'TimeoutError' ? 'no answer within the time allowed' : (e.message ?? String(err));
      if (before !== this.state) this.logState();
    } finally {
      this.checkedAt = Date.now();
    }
  }

  private logState(): void {
    if (this.state === 'unauthorized')
      this.logger.error(
        { provider: 'replicate', detail: this.detail },
        'REPLICATE_API_TOKEN was refused by Replicate: every task will fail until it is replaced (see https://replicate.com/account/api-tokens); /readyz answers 503',
      );
    else
      this.logger.warn(
        { provider: 'replicate', detail: this.detail },
        'Replicate is not reachable; tasks wait and retry, and the check is repeated',
      );
  }
}
