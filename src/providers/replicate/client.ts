import { isDeepStrictEqual } from 'node:util';
import { Agent, type Dispatcher } from 'undici';
import type { Logger } from '../../log';
import {
  isTerminal,
  ProviderError,
  type CreatePredictionRequest,
  type FindCreatedOptions,
  type InvalidField,
  type KnownPredictionStatus,
  type OutputFile,
  type Prediction,
  type Provider,
  type ProviderErrorKind,
  type RequestOptions,
  type StreamOptions,
  type StreamResult,
} from '../types';
import { backoffMs, sleep, type RetryPolicy } from '../../retry';
import type { ProviderPace } from './pace';
import { SseParser } from './sse';

export const DEFAULT_BASE_URL = 'https://api.replicate.com/v1';

export type { RetryPolicy } from '../../retry';

export interface RateLimitPolicy {
  /** How many 429 answers one call waits out itself before rejecting with `rate_limited`. */
  retries: number;
  /** A `Retry-After` longer than this is not waited for here; the caller gets `rate_limited`. */
  maxWaitMs: number;
}

export interface ReplicateClientOptions {
  token: string;
  /** API base including `/v1`; pass `REPLICATE_BASE_URL` here. Default https://api.replicate.com/v1. */
  baseUrl?: string;
  /** Reads (get, cancel, list, stream reconnects). Default {attempts: 6, baseMs: 500, maxMs: 8000}. */
  retry?: RetryPolicy;
  /** Default {retries: 3, maxWaitMs: 60000}. */
  rateLimit?: RateLimitPolicy;
  timeouts?: {
    connectMs?: number; // default 5000
    /** Time to response headers (a sync-mode create extends it by its wait). Default 30000. */
    headersMs?: number;
    /** Longest gap between body chunks. Default 30000. */
    bodyMs?: number;
    /** Longest silence on an SSE stream before it counts as dropped. Default 120000. */
    streamIdleMs?: number;
  };
  userAgent?: string;
  /** Keep-alive connections per origin. Default 16. */
  connections?: number;
  /** Use this dispatcher instead of creating one (it is then not closed by `close()`). */
  dispatcher?: Dispatcher;
  /**
   * Paces every API request (creates and reads) under the provider's budgets, shared by all
   * callers; a 429 pauses the whole pace. Without it, requests go out as they come.
   */
  pace?: ProviderPace;
  logger?: Logger;
  /** Test seams. */
  sleep?: (ms: number, signal?: AbortSignal) => Promise<void>;
  random?: () => number;
}

interface RawAnswer {
  status: number;
  headers: Record<string, string | string[] | undefined>;
  text: string;
}

type Op = 'create' | 'read';

// Failures where the request can't have reached the server: safe to repeat even a create.
const NOT_SENT_CODES = new Set([
  'ECONNREFUSED',
  'ENOTFOUND',
  'EAI_AGAIN',
  'EHOSTUNREACH',
  'ENETUNREACH',
  'UND_ERR_CONNECT_TIMEOUT',
]);

function firstHeader(h: Record<string, string | string[] | undefined>, name: string): string | undefined {
  const v = h[name];
  return Array.isArray(v) ? v[0] : v;
}

/**
 * How long a 429 asks us to wait: `Retry-After` (seconds or HTTP date) first, then a numeric
 * `retry_after` in the body, then the `~30s` / `in 1 second` in the detail. Null if none says.
 */
export function parseRetryAfter(headerValue: string | undefined, body: unknown, now = Date.now()): number | null {
  if (headerValue !== undefined && headerValue.trim() !== '') {
    const v = headerValue.trim();
    if (/^\d+(\.\d+)?$/.test(v)) return Math.round(Number(v) * 1000);
    const at = Date.parse(v);
    if (!Number.isNaN(at)) return Math.max(0, at - now);
  }
  if (body && typeof body === 'object') {
    const b = body as { retry_after?: unknown; detail?: unknown };
    if (typeof b.retry_after === 'number' && Number.isFinite(b.retry_after)) return Math.round(b.retry_after * 1000);
    if (typeof b.detail === 'string') {
      const m = /~\s*(\d+(?:\.\d+)?)\s*s\b/.exec(b.detail) ?? /in\s+(\d+(?:\.\d+)?)\s+seconds?\b/i.exec(b.detail);
      if (m) return Math.round(Number(m[1]) * 1000);
    }
  }
  return null;
}

const KNOWN: readonly string[] = ['starting', 'processing', 'succeeded', 'failed', 'canceled', 'aborted'];

function str(v: unknown): string | null {
  return typeof v === 'string' ? v : null;
}

/** Fills in the keys Replicate sometimes leaves out; keeps the raw object alongside. */
export function toPrediction(raw: unknown): Prediction {
  if (!raw || typeof raw !== 'object' || typeof (raw as { id?: unknown }).id !== 'string') {
    throw new Error('Not a prediction object');
  }
  const r = raw as Record<string, unknown>;
  const rawStatus = typeof r.status === 'string' ? r.status : 'unknown';
  const urls = (r.urls && typeof r.urls === 'object' ? r.urls : {}) as Record<string, unknown>;
  const u: Prediction['urls'] = {};
  for (const k of ['get', 'cancel', 'stream', 'web'] as const)
    if (typeof urls[k] === 'string') u[k] = urls[k] as string;
  return {
    id: r.id as string,
    model: str(r.model),
    version: str(r.version),
    status: KNOWN.includes(rawStatus) ? (rawStatus as KnownPredictionStatus) : 'unknown',
    rawStatus,
    input: r.input && typeof r.input === 'object' ? (r.input as Record<string, unknown>) : null,
    output: r.output === undefined ? null : r.output,
    error: r.error == null ? null : typeof r.error === 'string' ? r.error : JSON.stringify(r.error),
    logs: str(r.logs),
    urls: u,
    created_at: str(r.created_at),
    started_at: str(r.started_at),
    completed_at: str(r.completed_at),
    metrics: r.metrics && typeof r.metrics === 'object' ? (r.metrics as Record<string, unknown>) : null,
    data_removed: r.data_removed === true,
    webhook: str(r.webhook),
    deadline: str(r.deadline),
    raw: r,
  };
}

class HandlerError {
  constructor(readonly error: unknown) {}
}

/** Where a stream is, across its reconnections. `progressed`: this connection delivered an event. */
interface StreamCursor {
  lastEventId: string | null;
  errorDetail: string | null;
  progressed: boolean;
}

/** The reason a `done` event gives (`{"reason": "canceled"}`); `{}` or empty: a normal end. */
function doneReason(data: string): string {
  try {
    const d = JSON.parse(data) as { reason?: unknown };
    if (typeof d?.reason === 'string' && d.reason !== '') return d.reason;
  } catch {
    /* `{}` or empty: a normal end */
  }
  return 'done';
}

/**
 * Replicate over undici: one keep-alive Agent, every answer classified into a ProviderError kind.
 * Reads retry inside with the RetryPolicy; creates are never repeated once they may have landed.
 */
export class ReplicateClient implements Provider {
  readonly baseUrl: string;
  private readonly token: string;
  private readonly agent: Dispatcher;
  /**
   * SSE output streams: each holds its connection for the whole answer, so they get their own
   * dispatcher without a connection cap (a capped pool let 16 streams run and queued the rest).
   */
  private readonly streamAgent: Dispatcher;
  private readonly ownsAgent: boolean;
  private readonly retry: RetryPolicy;
  private readonly rateLimit: RateLimitPolicy;
  private readonly headersMs: number;
  private readonly bodyMs: number;
  private readonly streamIdleMs: number;
  private readonly userAgent: string;
  private readonly log: Logger | undefined;
  private readonly sleep: (ms: number, signal?: AbortSignal) => Promise<void>;
  private readonly random: () => number;
  readonly pace: ProviderPace | undefined;

  constructor(opts: ReplicateClientOptions) {
    if (!opts.token) throw new Error('ReplicateClient needs a token');
    this.token = opts.token;
    this.baseUrl = (opts.baseUrl ?? DEFAULT_BASE_URL).replace(/\/+$/, '');
    new URL(this.baseUrl); // throws early on a malformed base URL
    this.retry = opts.retry ?? { attempts: 6, baseMs: 500, maxMs: 8000 };
    this.rateLimit = opts.rateLimit ?? { retries: 3, maxWaitMs: 60_000 };
    this.headersMs = opts.timeouts?.headersMs ?? 30_000;
    this.bodyMs = opts.timeouts?.bodyMs ?? 30_000;
    this.streamIdleMs = opts.timeouts?.streamIdleMs ?? 120_000;
    this.userAgent = opts.userAgent ?? 'pyre/0.1.0';
    this.log = opts.logger;
    this.sleep = opts.sleep ?? sleep;
    this.random = opts.random ?? Math.random;
    this.pace = opts.pace;
    if (opts.dispatcher) {
      this.agent = opts.dispatcher;
      this.streamAgent = opts.dispatcher;
      this.ownsAgent = false;
    } else {
      const agent = (connections: number | null) =>
        new Agent({
          connections,
          keepAliveTimeout: 30_000,
          connect: { timeout: opts.timeouts?.connectMs ?? 5000 },
          headersTimeout: this.headersMs,
          bodyTimeout: this.bodyMs,
        });
      this.agent = agent(opts.connections ?? 16);
      this.streamAgent = agent(null);
      this.ownsAgent = true;
    }
  }

  async close(): Promise<void> {
    if (this.ownsAgent) await Promise.all([this.agent.close(), this.streamAgent.close()]);
  }

  // ---- public API -------------------------------------------------------------------------

  async create(req: CreatePredictionRequest): Promise<Prediction> {
    const slash = req.model.indexOf('/');
    if (slash <= 0 || slash === req.model.length - 1 || req.model.indexOf('/', slash + 1) >= 0) {
      throw new ProviderError({
        kind: 'permanent',
        message: `Invalid model reference ${JSON.stringify(req.model)}`,
        method: 'POST',
        url: this.baseUrl,
      });
    }
    const [owner, name] = [req.model.slice(0, slash), req.model.slice(slash + 1)];
    const url = `${this.baseUrl}/models/${encodeURIComponent(owner)}/${encodeURIComponent(name)}/predictions`;
    const body: Record<string, unknown> = { input: req.input };
    if (req.webhook !== undefined) body.webhook = req.webhook;
    if (req.webhookEventsFilter !== undefined) body.webhook_events_filter = req.webhookEventsFilter;
    if (req.stream !== undefined) body.stream = req.stream;
    const headers: Record<string, string> = {};
    let headersTimeout = this.headersMs;
    if (req.wait !== undefined) {
      const secs = req.wait === true ? 60 : Math.min(60, Math.max(1, Math.round(req.wait)));
      headers.prefer = req.wait === true ? 'wait' : `wait=${secs}`;
      headersTimeout = Math.max(headersTimeout, secs * 1000 + 5000);
    }
    if (req.cancelAfter !== undefined) headers['cancel-after'] = req.cancelAfter;
    const json = await this.call('create', 'POST', url, {
      body: JSON.stringify(body),
      headers,
      headersTimeout,
      signal: req.signal,
    });
    return this.asPrediction(json, 'create', 'POST', url);
  }

  async get(id: string, opts: RequestOptions = {}): Promise<Prediction> {
    const url = `${this.baseUrl}/predictions/${encodeURIComponent(id)}`;
    return this.asPrediction(await this.call('read', 'GET', url, { signal: opts.signal }), 'read', 'GET', url);
  }

  async cancel(id: string, opts: RequestOptions = {}): Promise<Prediction> {
    const url = `${this.baseUrl}/predictions/${encodeURIComponent(id)}/cancel`;
    // Ahead of the polls waiting their turn: a cancel stops billing.
    const answer = await this.call('read', 'POST', url, { signal: opts.signal, urgent: true });
    return this.asPrediction(answer, 'read', 'POST', url);
  }

  /** One page of GET /predictions (newest first). Pass `next` from the previous page as `url`. */
  async listPredictions(
    opts: { url?: string; createdAfter?: Date; createdBefore?: Date; signal?: AbortSignal } = {},
  ): Promise<{ next: string | null; previous: string | null; results: Prediction[] }> {
    let url = opts.url;
    if (url && new URL(url).origin !== new URL(this.baseUrl).origin) {
      // Our token goes with this request: only ever to the API's own origin.
      throw new ProviderError({
        kind: 'permanent',
        message: `Refusing to follow a list link to another origin: ${new URL(url).origin}`,
        method: 'GET',
        url,
      });
    }
    if (!url) {
      const q = new URLSearchParams();
      if (opts.createdAfter) q.set('created_after', opts.createdAfter.toISOString());
      if (opts.createdBefore) q.set('created_before', opts.createdBefore.toISOString());
      url = `${this.baseUrl}/predictions${q.size ? `?${q}` : ''}`;
    }
    const json = (await this.call('read', 'GET', url, { signal: opts.signal })) as {
      next?: unknown;
      previous?: unknown;
      results?: unknown;
    };
    if (!json || !Array.isArray(json.results)) {
      throw new ProviderError({ kind: 'transient', message: 'Malformed prediction list', method: 'GET', url });
    }
    return {
      next: typeof json.next === 'string' ? json.next : null,
      previous: typeof json.previous === 'string' ? json.previous : null,
      results: json.results.flatMap((r) => {
        try {
          return [toPrediction(r)];
        } catch {
          return [];
        }
      }),
    };
  }

  async findCreated(
    req: CreatePredictionRequest,
    since: Date,
    opts: FindCreatedOptions = {},
  ): Promise<Prediction | null> {
    const from = since.getTime() - (opts.clockSkewMs ?? 2000);
    const exclude = new Set(opts.excludeIds ?? []);
    const maxPages = opts.maxPages ?? 10;
    const matches: Prediction[] = [];
    let url: string | undefined;
    for (let page = 0; page < maxPages; page++) {
      const res = await this.listPredictions({
        url,
        createdAfter: url ? undefined : new Date(from),
        signal: opts.signal,
      });
      let older = false;
      for (const item of res.results) {
        const created = item.created_at ? Date.parse(item.created_at) : NaN;
        if (!Number.isNaN(created) && created < from) {
          older = true; // newest first: the rest of the list is older still
          continue;
        }
        if (exclude.has(item.id) || (item.model !== null && item.model !== req.model)) continue;
        // List items may be trimmed; read the full prediction before comparing inputs.
        const full = item.input === null ? await this.get(item.id, { signal: opts.signal }) : item;
        if (!isDeepStrictEqual(full.input, req.input)) continue;
        if (req.webhook !== undefined && full.webhook !== null && full.webhook !== req.webhook) continue;
        matches.push(full);
      }
      if (older || !res.next) break;
      url = res.next;
    }
    if (matches.length === 0) return null;
    if (matches.length > 1)
      this.log?.warn(
        { ids: matches.map((m) => m.id), model: req.model },
        'findCreated: several predictions match; taking the oldest',
      );
    // The list is newest first; reverse, then a stable sort keeps list order among equal times.
    matches.reverse().sort((a, b) => Date.parse(a.created_at ?? '') - Date.parse(b.created_at ?? ''));
    return matches[0]!;
  }

  /**
   * GET /account: whom the token belongs to. A cheap authenticated call, made once at start to
   * check REPLICATE_API_TOKEN (a refused token is a `permanent` 401). Retried as any read: bound
   * it with `signal`.
   */
  async account(opts: RequestOptions = {}): Promise<{ username: string | null; type: string | null }> {
    const url = `${this.baseUrl}/account`;
    const json = (await this.call('read', 'GET', url, { signal: opts.signal })) as {
      username?: unknown;
      type?: unknown;
    } | null;
    return {
      username: typeof json?.username === 'string' ? json.username : null,
      type: typeof json?.type === 'string' ? json.type : null,
    };
  }

  /** GET /webhooks/default/secret: the `whsec_...` key webhook deliveries are signed with. */
  async getWebhookSecret(opts: RequestOptions = {}): Promise<string> {
    const url = `${this.baseUrl}/webhooks/default/secret`;
    const json = (await this.call('read', 'GET', url, { signal: opts.signal })) as { key?: unknown };
    if (!json || typeof json.key !== 'string')
      throw new ProviderError({ kind: 'transient', message: 'Malformed webhook secret answer', method: 'GET', url });
    return json.key;
  }

  /**
   * Opens an output file for download (no Authorization: delivery URLs are capabilities).
   * 403/404/410 mean the provider has already removed it: `permanent`, `detail` says expired.
   */
  async openOutput(url: string, opts: RequestOptions = {}): Promise<OutputFile> {
    for (let attempt = 1; ; attempt++) {
      let res: Dispatcher.ResponseData;
      try {
        const u = new URL(url);
        res = await this.agent.request({
          origin: u.origin,
          path: u.pathname + u.search,
          method: 'GET',
          headers: { 'user-agent': this.userAgent },
          signal: opts.signal,
        });
      } catch (err) {
        if (opts.signal?.aborted) throw err;
        const e = this.networkError(err, 'read', 'GET', url);
        if (attempt < this.retry.attempts) {
          await this.sleep(this.backoff(attempt), opts.signal);
          continue;
        }
        throw e;
      }
      if (res.statusCode >= 200 && res.statusCode < 300) {
        const len = firstHeader(res.headers, 'content-length');
        return {
          contentType: firstHeader(res.headers, 'content-type') ?? null,
          contentLength: len ? Number(len) : null,
          body: res.body,
        };
      }
      const text = await res.body.text().catch(() => '');
      if ([403, 404, 410].includes(res.statusCode)) {
        throw new ProviderError({
          kind: 'permanent',
          status: res.statusCode,
          message: `Output file is gone (HTTP ${res.statusCode}): it has expired or been removed`,
          detail: 'output expired',
          method: 'GET',
          url,
        });
      }
      const e = this.classify('read', 'GET', url, { status: res.statusCode, headers: res.headers, text });
      if (e.kind === 'permanent' || attempt >= this.retry.attempts) throw e;
      await this.sleep(
        e.kind === 'rate_limited' && e.retryAfterMs !== null
          ? Math.min(e.retryAfterMs, this.rateLimit.maxWaitMs)
          : this.backoff(attempt),
        opts.signal,
      );
    }
  }

  async stream(url: string, opts: StreamOptions): Promise<StreamResult> {
    const maxReconnects = opts.maxReconnects ?? 5;
    const u = new URL(url);
    const cursor: StreamCursor = { lastEventId: opts.lastEventId ?? null, errorDetail: null, progressed: false };
    let reconnects = 0;
    let idleRounds = 0;
    for (;;) {
      cursor.progressed = false;
      try {
        const res = await this.openStream(url, cursor.lastEventId, opts.signal);
        const reason = await this.readStream(res, cursor, opts);
        if (reason !== null) return { reason, error: cursor.errorDetail, lastEventId: cursor.lastEventId, reconnects };
        this.log?.debug({ url: u.pathname, lastEventId: cursor.lastEventId }, 'stream ended before done; reconnecting');
      } catch (err) {
        if (err instanceof HandlerError) throw err.error;
        if (opts.signal?.aborted) throw opts.signal.reason ?? err;
        if (err instanceof ProviderError && err.kind === 'permanent') throw err;
        const why = { url: u.pathname, lastEventId: cursor.lastEventId, err: (err as Error).message };
        this.log?.debug(why, 'stream dropped; reconnecting');
      }
      idleRounds = cursor.progressed ? 0 : idleRounds + 1;
      if (idleRounds > maxReconnects) {
        throw new ProviderError({
          kind: 'transient',
          message: `Stream dropped ${idleRounds} times without progress`,
          method: 'GET',
          url,
        });
      }
      reconnects++;
      await this.sleep(cursor.progressed ? 0 : this.backoff(idleRounds), opts.signal);
    }
  }

  /** GET of an SSE stream (resuming after `lastEventId`); a non-200 answer is thrown as a ProviderError. */
  private async openStream(
    url: string,
    lastEventId: string | null,
    signal: AbortSignal | undefined,
  ): Promise<Dispatcher.ResponseData> {
    const u = new URL(url);
    // The token goes to the API's own origin and Replicate's stream hosts only.
    const sendAuth = u.origin === new URL(this.baseUrl).origin || /(^|\.)replicate\.(com|net)$/.test(u.hostname);
    const headers: Record<string, string> = {
      accept: 'text/event-stream',
      'cache-control': 'no-store',
      'user-agent': this.userAgent,
    };
    if (sendAuth) headers.authorization = `Bearer ${this.token}`;
    if (lastEventId !== null) headers['last-event-id'] = lastEventId;
    const res = await this.streamAgent.request({
      origin: u.origin,
      path: u.pathname + u.search,
      method: 'GET',
      headers,
      signal,
      headersTimeout: this.headersMs,
      bodyTimeout: this.streamIdleMs,
    });
    if (res.statusCode === 200) return res;
    const text = await res.body.text().catch(() => '');
    const e = this.classify('read', 'GET', url, { status: res.statusCode, headers: res.headers, text });
    if (e.kind === 'permanent') throw e;
    if (e.kind === 'rate_limited' && e.retryAfterMs !== null)
      await this.sleep(Math.min(e.retryAfterMs, this.rateLimit.maxWaitMs), signal);
    throw e;
  }

  /**
   * Hands each event of one connection to `onEvent`, moving the cursor; the `done` event's reason,
   * or null if the connection ended before it. A handler's error is thrown as a HandlerError.
   */
  private async readStream(
    res: Dispatcher.ResponseData,
    cursor: StreamCursor,
    opts: StreamOptions,
  ): Promise<string | null> {
    const parser = new SseParser(cursor.lastEventId);
    const decoder = new TextDecoder();
    try {
      for await (const chunk of res.body) {
        for (const ev of parser.push(decoder.decode(chunk as Uint8Array, { stream: true }))) {
          cursor.progressed = true;
          cursor.lastEventId = ev.id ?? cursor.lastEventId;
          if (ev.event === 'error') cursor.errorDetail = detailOf(ev.data);
          try {
            await opts.onEvent(ev);
          } catch (err) {
            throw new HandlerError(err);
          }
          if (ev.event === 'done') return doneReason(ev.data);
        }
      }
      return null;
    } finally {
      // Ends the connection if we leave early (handler threw, abort); a no-op after EOF.
      if (!res.body.destroyed) res.body.destroy();
    }
  }

  // ---- plumbing ---------------------------------------------------------------------------

  private backoff(attempt: number): number {
    return backoffMs(this.retry, attempt, this.random);
  }

  private asPrediction(json: unknown, op: Op, method: string, url: string): Prediction {
    try {
      return toPrediction(json);
    } catch {
      // A 2xx create answer we cannot read may still have created something.
      throw new ProviderError({
        kind: op === 'create' ? 'ambiguous_create' : 'transient',
        message: 'Answer is not a prediction',
        method,
        url,
      });
    }
  }

  /** One logical call: retries per the policies, returns parsed JSON of a 2xx answer. */
  private async call(
    op: Op,
    method: string,
    url: string,
    init: {
      body?: string;
      headers?: Record<string, string>;
      headersTimeout?: number;
      signal?: AbortSignal;
      /** Paced ahead of the other waiting requests. */
      urgent?: boolean;
    },
  ): Promise<unknown> {
    let attempt = 0;
    let throttled = 0;
    for (;;) {
      attempt++;
      let err: ProviderError;
      // Our turn under the budget (rejects only when the caller gives up: nothing was sent).
      await this.pace?.take(op, init.signal, init.urgent);
      try {
        const answer = await this.send(method, url, init);
        if (answer.status >= 200 && answer.status < 300) {
          try {
            return answer.text === '' ? null : JSON.parse(answer.text);
          } catch {
            throw new ProviderError({
              kind: op === 'create' ? 'ambiguous_create' : 'transient',
              status: answer.status,
              message: `Unreadable JSON in HTTP ${answer.status} answer`,
              method,
              url,
            });
          }
        }
        err = this.classify(op, method, url, answer);
      } catch (e) {
        if (e instanceof ProviderError) err = e;
        else if (init.signal?.aborted && op === 'read') throw init.signal.reason ?? e;
        else err = this.networkError(e, op, method, url);
      }
      if (err.kind === 'rate_limited') {
        const wait = err.retryAfterMs ?? this.backoff(throttled + 1);
        // Paced: the whole client waits (the pace holds every request back), not this call alone.
        this.pace?.throttled(wait);
        if (throttled < this.rateLimit.retries && wait <= this.rateLimit.maxWaitMs) {
          throttled++;
          attempt--; // a 429 is not a failed attempt
          this.log?.info({ method, url: new URL(url).pathname, waitMs: wait }, 'provider rate limited; waiting');
          if (!this.pace) await this.sleep(wait, init.signal);
          continue;
        }
      }
      if (err.kind === 'transient' && attempt < (op === 'read' ? this.retry.attempts : 2)) {
        const wait = this.backoff(attempt);
        this.log?.warn(
          { method, url: new URL(url).pathname, status: err.status, code: err.code, attempt, waitMs: wait },
          'provider call failed; retrying',
        );
        await this.sleep(wait, init.signal);
        continue;
      }
      throw err;
    }
  }

  private async send(
    method: string,
    url: string,
    init: { body?: string; headers?: Record<string, string>; headersTimeout?: number; signal?: AbortSignal },
  ): Promise<RawAnswer> {
    const u = new URL(url);
    const headers: Record<string, string> = {
      authorization: `Bearer ${this.token}`,
      accept: 'application/json',
      'user-agent': this.userAgent,
      ...init.headers,
    };
    if (init.body !== undefined) headers['content-type'] = 'application/json';
    const res = await this.agent.request({
      origin: u.origin,
      path: u.pathname + u.search,
      method: method as Dispatcher.HttpMethod,
      headers,
      body: init.body,
      signal: init.signal,
      headersTimeout: init.headersTimeout ?? this.headersMs,
      bodyTimeout: this.bodyMs,
    });
    const text = await res.body.text();
    return { status: res.statusCode, headers: res.headers, text };
  }

  private networkError(e: unknown, op: Op, method: string, url: string): ProviderError {
    const code = (e as { code?: unknown })?.code;
    const codeStr = typeof code === 'string' ? code : (e as Error)?.name === 'AbortError' ? 'ABORTED' : 'UNKNOWN';
    const kind: ProviderErrorKind = op === 'create' && !NOT_SENT_CODES.has(codeStr) ? 'ambiguous_create' : 'transient';
    return new ProviderError({
      kind,
      code: codeStr,
      message: `${method} ${new URL(url).pathname} failed without an answer (${codeStr}): ${(e as Error)?.message ?? String(e)}`,
      method,
      url,
      cause: e,
    });
  }

  private classify(op: Op, method: string, url: string, a: RawAnswer): ProviderError {
    let body: unknown;
    try {
      body = a.text ? JSON.parse(a.text) : null;
    } catch {
      body = null; // not JSON: classified by status alone
    }
    const b = (body && typeof body === 'object' ? body : {}) as {
      title?: unknown;
      detail?: unknown;
      invalid_fields?: unknown;
    };
    const title = typeof b.title === 'string' ? b.title : null;
    const detail = typeof b.detail === 'string' ? b.detail : body === null && a.text ? a.text.slice(0, 500) : null;
    const invalidFields = Array.isArray(b.invalid_fields) ? (b.invalid_fields as InvalidField[]) : [];
    const said = [title, detail?.trim()].filter(Boolean).join(': ') || `HTTP ${a.status}`;
    let kind: ProviderErrorKind;
    let retryAfterMs: number | null = null;
    if (a.status === 429) {
      kind = 'rate_limited';
      retryAfterMs = parseRetryAfter(firstHeader(a.headers, 'retry-after'), body);
    } else if (a.status >= 500 || a.status === 408) {
      kind = op === 'create' ? 'ambiguous_create' : 'transient';
    } else {
      kind = 'permanent'; // 400, 401, 402, 403, 404, 409, 422, ...: repeating cannot help
    }
    return new ProviderError({
      kind,
      status: a.status,
      retryAfterMs,
      title,
      detail,
      invalidFields,
      message: `Replicate ${a.status} on ${method} ${new URL(url).pathname}: ${said}`,
      method,
      url,
    });
  }
}

function detailOf(data: string): string {
  try {
    const d = JSON.parse(data) as { detail?: unknown };
    if (d && typeof d.detail === 'string') return d.detail;
  } catch {
    /* plain text error */
  }
  return data;
}

export function createReplicateClient(opts: ReplicateClientOptions): ReplicateClient {
  return new ReplicateClient(opts);
}

export { isTerminal };
