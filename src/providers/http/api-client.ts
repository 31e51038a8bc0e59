import { Agent, type Dispatcher } from 'undici';
import type { Logger } from '../../log';
import { backoffMs, sleep, type RetryPolicy } from '../../retry';
import { ProviderError, type InvalidField, type OutputFile, type ProviderErrorKind } from '../types';
import type { ProviderPace } from './pace';
import { parseRetryAfter } from './retry-after';

export type { RetryPolicy } from '../../retry';

/**
 * The HTTP layer every provider client is built on: one keep-alive undici Agent, the provider's
 * pace (budgets, a pause after a 429), retries by the error contract (reads retried, a create
 * never repeated once it may have landed), every non-2xx answer classified into a ProviderError
 * kind. A provider's client adds its own URLs and answer shapes on top.
 */

export interface RateLimitPolicy {
  /** How many 429 answers one call waits out itself before rejecting with `rate_limited`. */
  retries: number;
  /** A `Retry-After` longer than this is not waited for here; the caller gets `rate_limited`. */
  maxWaitMs: number;
}

export interface ApiClientOptions {
  /** Who answers, in error messages (`Replicate`, `OpenAI-compatible endpoint`). */
  name: string;
  token: string;
  baseUrl: string;
  /** Reads (and stream reconnects). Default {attempts: 6, baseMs: 500, maxMs: 8000}. */
  retry?: RetryPolicy;
  /** Default {retries: 3, maxWaitMs: 60000}. */
  rateLimit?: RateLimitPolicy;
  timeouts?: {
    connectMs?: number; // default 5000
    /** Time to response headers (a sync-mode create extends it by its wait). Default 30000. */
    headersMs?: number;
    /** Longest gap between body chunks. Default 30000. */
    bodyMs?: number;
    /** Longest silence on a streamed answer before it counts as dropped. Default 120000. */
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

/** Which rules a request is retried by: a create is never repeated once it may have landed. */
export type Op = 'create' | 'read';

export interface CallInit {
  body?: string;
  headers?: Record<string, string>;
  headersTimeout?: number;
  /** The longest gap between body chunks (a streamed answer waits longer). */
  bodyTimeout?: number;
  signal?: AbortSignal;
  /** Paced ahead of the other waiting requests (a cancel stops billing). */
  urgent?: boolean;
  /** A streamed answer, holding its connection for as long as it runs: sent on `streamAgent`. */
  stream?: boolean;
}

interface RawAnswer {
  status: number;
  headers: Record<string, string | string[] | undefined>;
  text: string;
}

// Failures where the request can't have reached the server: safe to repeat even a create.
const NOT_SENT_CODES = new Set([
  'ECONNREFUSED',
  'ENOTFOUND',
  'EAI_AGAIN',
  'EHOSTUNREACH',
  'ENETUNREACH',
  'UND_ERR_CONNECT_TIMEOUT',
]);

export function firstHeader(h: Record<string, string | string[] | undefined>, name: string): string | undefined {
  const v = h[name];
  return Array.isArray(v) ? v[0] : v;
}

export class ApiClient {
  readonly name: string;
  readonly baseUrl: string;
  readonly agent: Dispatcher;
  /**
   * Streamed answers (SSE): each holds its connection for the whole answer, so they get their own
   * dispatcher without a connection cap (on the capped pool, 16 streams ran and the rest queued
   * until one ended).
   */
  readonly streamAgent: Dispatcher;
  readonly retry: RetryPolicy;
  readonly rateLimit: RateLimitPolicy;
  readonly headersMs: number;
  readonly bodyMs: number;
  readonly streamIdleMs: number;
  readonly userAgent: string;
  readonly log: Logger | undefined;
  readonly sleep: (ms: number, signal?: AbortSignal) => Promise<void>;
  readonly pace: ProviderPace | undefined;
  private readonly token: string;
  private readonly ownsAgent: boolean;
  private readonly random: () => number;

  constructor(opts: ApiClientOptions) {
    if (!opts.token) throw new Error(`${opts.name} client needs a token`);
    this.name = opts.name;
    this.token = opts.token;
    this.baseUrl = opts.baseUrl.replace(/\/+$/, '');
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

  backoff(attempt: number): number {
    return backoffMs(this.retry, attempt, this.random);
  }

  /** Whether our token may go with a request to `url` (the API's own origin only, unless `also`). */
  ownOrigin(url: string): boolean {
    return new URL(url).origin === new URL(this.baseUrl).origin;
  }

  /** One logical call answered with JSON: retried per the policies; the parsed 2xx body. */
  call(op: Op, method: string, url: string, init: CallInit = {}): Promise<unknown> {
    return this.exchange(op, method, url, init, async (res) => {
      const text = await res.body.text();
      try {
        return text === '' ? null : JSON.parse(text);
      } catch {
        throw new ProviderError({
          kind: op === 'create' ? 'ambiguous_create' : 'transient',
          status: res.statusCode,
          message: `Unreadable JSON in HTTP ${res.statusCode} answer`,
          method,
          url,
        });
      }
    });
  }

  /**
   * One logical call whose 2xx answer is read by `onSuccess` (a streamed body is handed over
   * unread). 429s are waited out (the whole pace pauses) a bounded number of times; transient
   * failures retried (a create only when it cannot have been sent); the rest thrown.
   */
  async exchange<T>(
    op: Op,
    method: string,
    url: string,
    init: CallInit,
    onSuccess: (res: Dispatcher.ResponseData) => Promise<T>,
  ): Promise<T> {
    let attempt = 0;
    let throttled = 0;
    for (;;) {
      attempt++;
      let err: ProviderError;
      // Our turn under the budget (rejects only when the caller gives up: nothing was sent).
      await this.pace?.take(op, init.signal, init.urgent);
      try {
        const res = await this.send(method, url, init);
        if (res.statusCode >= 200 && res.statusCode < 300) return await onSuccess(res);
        const text = await res.body.text().catch(() => '');
        err = this.classify(op, method, url, { status: res.statusCode, headers: res.headers, text });
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

  /**
   * Opens a file for download (no Authorization: delivery URLs are capabilities), retried as a
   * read. 403/404/410 mean the provider has already removed it: `permanent`, detail `output expired`.
   */
  async download(url: string, signal?: AbortSignal): Promise<OutputFile> {
    for (let attempt = 1; ; attempt++) {
      let res: Dispatcher.ResponseData;
      try {
        const u = new URL(url);
        res = await this.agent.request({
          origin: u.origin,
          path: u.pathname + u.search,
          method: 'GET',
          headers: { 'user-agent': this.userAgent },
          signal,
        });
      } catch (err) {
        if (signal?.aborted) throw err;
        const e = this.networkError(err, 'read', 'GET', url);
        if (attempt < this.retry.attempts) {
          await this.sleep(this.backoff(attempt), signal);
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
        signal,
      );
    }
  }

  /** One request, unretried; the token goes to the API's own origin only. */
  async send(method: string, url: string, init: CallInit): Promise<Dispatcher.ResponseData> {
    const u = new URL(url);
    const headers: Record<string, string> = {
      accept: 'application/json',
      'user-agent': this.userAgent,
      ...(this.ownOrigin(url) ? { authorization: `Bearer ${this.token}` } : {}),
      ...init.headers,
    };
    if (init.body !== undefined) headers['content-type'] = 'application/json';
    return (init.stream ? this.streamAgent : this.agent).request({
      origin: u.origin,
      path: u.pathname + u.search,
      method: method as Dispatcher.HttpMethod,
      headers,
      body: init.body,
      signal: init.signal,
      headersTimeout: init.headersTimeout ?? this.headersMs,
      bodyTimeout: init.bodyTimeout ?? this.bodyMs,
    });
  }

  /** The bearer token, for a request the provider client sends itself (another of its hosts). */
  authorization(): string {
    return `Bearer ${this.token}`;
  }

  networkError(e: unknown, op: Op, method: string, url: string): ProviderError {
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

  /**
   * A non-2xx answer as a ProviderError. Reads problem+json (`title`, `detail`, `invalid_fields`:
   * Replicate) and OpenAI's `{error: {message, type, code}}`; anything else by its status alone.
   */
  classify(op: Op, method: string, url: string, a: RawAnswer): ProviderError {
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
      error?: { message?: unknown; type?: unknown; code?: unknown } | null;
    };
    const oai = b.error && typeof b.error === 'object' ? b.error : null;
    const title = typeof b.title === 'string' ? b.title : typeof oai?.type === 'string' ? oai.type : null;
    const detail =
      typeof b.detail === 'string'
        ? b.detail
        : typeof oai?.message === 'string'
          ? oai.message
          : body === null && a.text
            ? a.text.slice(0, 500)
            : null;
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
      message: `${this.name} ${a.status} on ${method} ${new URL(url).pathname}: ${said}`,
      method,
      url,
    });
  }
}
