/**
 * The provider contract the task runner is written against. Replicate is the first (and so far
 * only) provider; the stand-in server speaks the same HTTP API so the real client runs in tests.
 */

/** Every status Replicate documents. `aborted`: a `Cancel-After` deadline passed before start. */
export type KnownPredictionStatus = 'starting' | 'processing' | 'succeeded' | 'failed' | 'canceled' | 'aborted';

/**
 * `unknown` stands for any status this code has never heard of; it is not terminal, so the
 * runner keeps polling it under its own deadline (python client #431 hung on `aborted` this way).
 */
export type PredictionStatus = KnownPredictionStatus | 'unknown';

export const TERMINAL_STATUSES: readonly KnownPredictionStatus[] = ['succeeded', 'failed', 'canceled', 'aborted'];

export function isTerminal(status: string): boolean {
  return (TERMINAL_STATUSES as readonly string[]).includes(status);
}

export type WebhookEvent = 'start' | 'output' | 'logs' | 'completed';

/** A model reference as Replicate names official models: `owner/name`. */
export type ModelRef = `${string}/${string}`;

/** The prediction as the provider reports it, with missing keys filled in (null). */
export interface Prediction {
  id: string;
  model: string | null;
  version: string | null;
  status: PredictionStatus;
  /** The status string exactly as received (differs from `status` only when that is `unknown`). */
  rawStatus: string;
  input: Record<string, unknown> | null;
  /** Per-model shape: a URL string or array of URLs (image/video), an array of tokens (text). */
  output: unknown;
  error: string | null;
  /** The full log so far (not a delta); null after data removal or on an early cancel. */
  logs: string | null;
  urls: { get?: string; cancel?: string; stream?: string; web?: string };
  created_at: string | null;
  started_at: string | null;
  completed_at: string | null;
  /** Open-ended; terminal predictions carry `predict_time` and `total_time` (seconds). */
  metrics: Record<string, unknown> | null;
  data_removed: boolean;
  webhook: string | null;
  deadline: string | null;
  /** The JSON object as received, for anything not normalized above. */
  raw: Record<string, unknown>;
  /** Tokens used, when the provider reports them (an OpenAI-compatible stream's last chunk). */
  usage?: { prompt_tokens: number | null; completion_tokens: number | null } | null;
}

export interface CreatePredictionRequest {
  model: ModelRef;
  /** Provider-ready input: the model registry has already mapped our fields to the model's. */
  input: Record<string, unknown>;
  /** HTTPS in production; the runner appends `?task_id=` so an ambiguous create can be matched. */
  webhook?: string;
  webhookEventsFilter?: WebhookEvent[];
  /** Deprecated upstream (ignored, `urls.stream` appears when the model streams); sent if set. */
  stream?: boolean;
  /** Sync mode: `Prefer: wait` (true) or `Prefer: wait=N` (N in 1..60 seconds). */
  wait?: true | number;
  /** `Cancel-After` header, Go-style duration such as `90s` or `5m`. */
  cancelAfter?: string;
  signal?: AbortSignal;
}

export interface RequestOptions {
  signal?: AbortSignal;
}

export type StreamEventType = 'output' | 'logs' | 'error' | 'done';

/** One server-sent event. `event` is usually a StreamEventType; others are passed through. */
export interface StreamEvent {
  event: StreamEventType | (string & {});
  id: string | null;
  data: string;
}

export interface StreamOptions {
  /** Resume after this event id (sent as `Last-Event-ID`). */
  lastEventId?: string;
  signal?: AbortSignal;
  /** Called for every event in order, including `done`; may be async (awaited, gives back-pressure). */
  onEvent: (event: StreamEvent) => void | Promise<void>;
  /** Reconnects allowed without any new event in between (default 5). */
  maxReconnects?: number;
}

export interface StreamResult {
  /** `done`: finished normally; `canceled` / `error`: the reason given in the `done` event. */
  reason: 'done' | 'canceled' | 'error' | (string & {});
  /** The detail of the last `error` event, if any. */
  error: string | null;
  lastEventId: string | null;
  /** How many times the stream was re-opened after a drop. */
  reconnects: number;
}

export interface FindCreatedOptions extends RequestOptions {
  /** Prediction ids already known to belong to other work; never returned. */
  excludeIds?: Iterable<string>;
  /** Allowance for clock difference between us and the provider (default 2000 ms). */
  clockSkewMs?: number;
  /** Upper bound on list pages read (default 10, 100 predictions each). */
  maxPages?: number;
}

/** A file the provider produced, opened for download. */
export interface OutputFile {
  contentType: string | null;
  contentLength: number | null;
  body: AsyncIterable<Uint8Array> & { destroy(err?: Error): void };
}

/** What the runner needs from a provider. */
export interface Provider {
  /**
   * Starts a prediction. Never retried on 5xx or a dropped connection: those reject with
   * `ambiguous_create`, to be settled with `findCreated`. 429 is waited out a bounded number of
   * times (it means nothing was created), then rejects with `rate_limited`.
   */
  create(req: CreatePredictionRequest): Promise<Prediction>;
  /** Reads a prediction; 429/5xx/network errors are retried inside. */
  get(id: string, opts?: RequestOptions): Promise<Prediction>;
  /** Cancels (idempotent upstream); retried like a read. */
  cancel(id: string, opts?: RequestOptions): Promise<Prediction>;
  /** Reads an SSE stream (`urls.stream`) to its `done`, reconnecting with `Last-Event-ID`. */
  stream(url: string, opts: StreamOptions): Promise<StreamResult>;
  /**
   * After an `ambiguous_create`: the prediction this request created at or after `since`, or
   * null if the provider has none (then it is safe to create again).
   */
  findCreated(req: CreatePredictionRequest, since: Date, opts?: FindCreatedOptions): Promise<Prediction | null>;
  /**
   * Opens an output file to copy it to our storage. 403/404/410 reject as `permanent` with
   * detail `output expired` (the provider's URLs die after about an hour); 5xx/network retried.
   */
  openOutput(url: string, opts?: RequestOptions): Promise<OutputFile>;
  close(): Promise<void>;
}

/**
 * - `permanent`: retrying cannot help (401, 402, 404, 422, other 4xx, a malformed answer). Fail the task.
 * - `rate_limited`: 429; nothing happened; try again after `retryAfterMs`.
 * - `transient`: 5xx or network trouble on a request that is safe to repeat (reads, or a create
 *   that never reached the server). Back off and retry.
 * - `ambiguous_create`: a create may or may not have started a prediction (5xx, connection lost,
 *   timeout after sending). Resolve with `findCreated` before doing anything else.
 * - `interrupted`: the work was lost and can be neither resumed nor safely repeated (a streamed
 *   completion cut off by a restart: sending it again would bill it twice). Fail the task.
 */
export type ProviderErrorKind = 'permanent' | 'rate_limited' | 'transient' | 'ambiguous_create' | 'interrupted';

export interface InvalidField {
  type: string;
  field: string;
  description: string;
}

export class ProviderError extends Error {
  readonly kind: ProviderErrorKind;
  /** HTTP status, or null when no answer arrived. */
  readonly status: number | null;
  readonly retryAfterMs: number | null;
  /** The provider's own words (problem+json `title` / `detail`), when it sent any. */
  readonly title: string | null;
  readonly detail: string | null;
  readonly invalidFields: InvalidField[];
  /** Network error code (`ECONNRESET`, `UND_ERR_HEADERS_TIMEOUT`, ...) when no answer arrived. */
  readonly code: string | null;
  readonly method: string;
  readonly url: string;

  constructor(init: {
    kind: ProviderErrorKind;
    message: string;
    status?: number | null;
    retryAfterMs?: number | null;
    title?: string | null;
    detail?: string | null;
    invalidFields?: InvalidField[];
    code?: string | null;
    method: string;
    url: string;
    cause?: unknown;
  }) {
    super(init.message, init.cause === undefined ? undefined : { cause: init.cause });
    this.name = 'ProviderError';
    this.kind = init.kind;
    this.status = init.status ?? null;
    this.retryAfterMs = init.retryAfterMs ?? null;
    this.title = init.title ?? null;
    this.detail = init.detail ?? null;
    this.invalidFields = init.invalidFields ?? [];
    this.code = init.code ?? null;
    this.method = init.method;
    this.url = init.url;
  }
}

export function isProviderError(err: unknown): err is ProviderError {
  return err instanceof ProviderError;
}

/** The providers a runner holds, by id (`replicate`, `openai`): a task runs on the one its row names. */
export type ProviderSet = ReadonlyMap<string, Provider>;
