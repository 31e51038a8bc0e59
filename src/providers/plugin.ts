import type { Config } from '../config';
import type { Logger } from '../log';
import type { RetryPolicy } from '../retry';
import type { ModelSpec } from '../tasks/models';
import type { PaceBudgets, ProviderPace } from './http/pace';
import type { Prediction, Provider } from './types';

/**
 * A provider as the gateway plugs it in: an id (what a model names, a task records and a
 * webhook URL carries), the models it serves from the configuration, and how it starts. The
 * list of plug-ins is `providers/index.ts`; nothing else names a provider.
 */
export interface ProviderPlugin {
  /** `replicate`, `openai`: `ModelSpec.provider`, the task row's `provider`, `/api/webhooks/<id>`. */
  readonly id: string;
  /** The models it serves under this configuration (none: it is not configured). */
  models(config: Config): ModelSpec[];
  /** Starts its client (in demo mode, on its stand-in), registering how it stops on `closers`. */
  start(ctx: ProviderStartContext): Promise<RunningProvider>;
}

export interface ProviderStartContext {
  config: Config;
  logger: Logger;
  closers: { push(name: string, close: () => Promise<void> | void): void };
  /** The pace of this provider's requests: its budgets, shared by the cluster when `shared` is set. */
  pace: (budgets: PaceBudgets) => ProviderPace;
  /** Tasks whose predictions lived on a stand-in of an earlier run start over (demo mode). */
  tasks: { requeueLostPredictions(provider: string): Promise<unknown> };
  /** Client retry timing (tests). */
  retry?: RetryPolicy;
}

/** A provider started: its client and what the HTTP side needs of it. */
export interface RunningProvider {
  readonly id: string;
  readonly client: Provider;
  /** Its API's base URL (calls to its origin are timed in /metrics). */
  readonly baseUrl: string;
  /** A request path as a metrics label, its ids taken out. */
  routeOf(path: string): string;
  /** Its webhooks, if it sends any (`POST /api/webhooks/<id>`). */
  readonly webhooks?: WebhookVerifier;
  /** Whether it takes our credentials, if it can tell (the gateway's overall `provider` in /readyz). */
  readonly health?: { current(): { state: ProviderState; detail: string | null } };
  /** Its readiness for /readyz's `providers.<id>`: from what it knows, never a network call per probe. */
  readiness(): ProviderReadiness;
  /** The pace its requests go out at (budgets, 429 pauses). */
  readonly pace?: ProviderPace;
}

/** What the last check of a provider's credentials found. */
export type ProviderState = 'checking' | 'ok' | 'unauthorized' | 'unreachable';

/**
 * A provider's line in /readyz. `state`: its credential check's result, or `configured` for a
 * provider that does not check (its credentials and base URL were read and validated at start).
 * `unauthorized` makes /readyz 503.
 */
export interface ProviderReadiness {
  state: ProviderState | 'configured';
  /** The provider's answer when not ok. */
  detail: string | null;
  /** Where its credentials come from: the configuration, or the built-in stand-in (demo mode). */
  credentials: 'configured' | 'stand-in';
  /** The variable holding the credential (named when refused). */
  credential: string;
}

/** A delivery refused: the answer's status and why (logged, and said to the sender). */
export class WebhookRefused extends Error {
  constructor(
    readonly status: 401 | 404 | 422,
    message: string,
    readonly reason: string = 'refused',
  ) {
    super(message);
  }
}

/** Checks a provider's webhook deliveries. */
export interface WebhookVerifier {
  /** False while the signing secret is unknown: deliveries are refused 404. */
  enabled(): boolean;
  /** The verified delivery: its id (the same across retries) and the prediction it carries; throws WebhookRefused. */
  verify(
    headers: Record<string, string | string[] | undefined>,
    rawBody: Buffer,
  ): { id: string; prediction: Prediction };
}
