import { isDeepStrictEqual } from 'node:util';
import type { Dispatcher } from 'undici';
import {
  isTerminal,
  ProviderError,
  type CreatePredictionRequest,
  type FindCreatedOptions,
  type OutputFile,
  type Prediction,
  type Provider,
  type RequestOptions,
  type StreamOptions,
  type StreamResult,
} from '../types';
import { ApiClient, type ApiClientOptions, type Op } from '../http/api-client';
import { readSse } from '../http/sse';
import { toPrediction } from './prediction';

export const DEFAULT_BASE_URL = 'https://api.replicate.com/v1';

export type { RetryPolicy } from '../../retry';
export type { RateLimitPolicy } from '../http/api-client';
export { parseRetryAfter } from '../http/retry-after';
export { toPrediction } from './prediction';

export interface ReplicateClientOptions extends Omit<ApiClientOptions, 'name' | 'baseUrl'> {
  /** API base including `/v1`; pass `REPLICATE_BASE_URL` here. Default https://api.replicate.com/v1. */
  baseUrl?: string;
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
  readonly pace: ApiClient['pace'];
  private readonly http: ApiClient;

  constructor(opts: ReplicateClientOptions) {
    if (!opts.token) throw new Error('ReplicateClient needs a token');
    this.http = new ApiClient({ ...opts, name: 'Replicate', baseUrl: opts.baseUrl ?? DEFAULT_BASE_URL });
    this.baseUrl = this.http.baseUrl;
    this.pace = this.http.pace;
  }

  close(): Promise<void> {
    return this.http.close();
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
    let headersTimeout = this.http.headersMs;
    if (req.wait !== undefined) {
      const secs = req.wait === true ? 60 : Math.min(60, Math.max(1, Math.round(req.wait)));
      headers.prefer = req.wait === true ? 'wait' : `wait=${secs}`;
      headersTimeout = Math.max(headersTimeout, secs * 1000 + 5000);
    }
    if (req.cancelAfter !== undefined) headers['cancel-after'] = req.cancelAfter;
    const json = await this.http.call('create', 'POST', url, {
      body: JSON.stringify(body),
      headers,
      headersTimeout,
      signal: req.signal,
    });
    return this.asPrediction(json, 'create', 'POST', url);
  }

  async get(id: string, opts: RequestOptions = {}): Promise<Prediction> {
    const url = `${this.baseUrl}/predictions/${encodeURIComponent(id)}`;
    return this.asPrediction(await this.http.call('read', 'GET', url, { signal: opts.signal }), 'read', 'GET', url);
  }

  async cancel(id: string, opts: RequestOptions = {}): Promise<Prediction> {
    const url = `${this.baseUrl}/predictions/${encodeURIComponent(id)}/cancel`;
    // Ahead of the polls waiting their turn: a cancel stops billing.
    const answer = await this.http.call('read', 'POST', url, { signal: opts.signal, urgent: true });
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
    const json = (await this.http.call('read', 'GET', url, { signal: opts.signal })) as {
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
      this.http.log?.warn(
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
    const json = (await this.http.call('read', 'GET', url, { signal: opts.signal })) as {
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
    const json = (await this.http.call('read', 'GET', url, { signal: opts.signal })) as { key?: unknown };
    if (!json || typeof json.key !== 'string')
      throw new ProviderError({ kind: 'transient', message: 'Malformed webhook secret answer', method: 'GET', url });
    return json.key;
  }

  /**
   * Opens an output file for download (no Authorization: delivery URLs are capabilities).
   * 403/404/410 mean the provider has already removed it: `permanent`, `detail` says expired.
   */
  openOutput(url: string, opts: RequestOptions = {}): Promise<OutputFile> {
    return this.http.download(url, opts.signal);
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
        this.http.log?.debug(
          { url: u.pathname, lastEventId: cursor.lastEventId },
          'stream ended before done; reconnecting',
        );
      } catch (err) {
        if (err instanceof HandlerError) throw err.error;
        if (opts.signal?.aborted) throw opts.signal.reason ?? err;
        if (err instanceof ProviderError && err.kind === 'permanent') throw err;
        const why = { url: u.pathname, lastEventId: cursor.lastEventId, err: (err as Error).message };
        this.http.log?.debug(why, 'stream dropped; reconnecting');
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
      await this.http.sleep(cursor.progressed ? 0 : this.http.backoff(idleRounds), opts.signal);
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
      'user-agent': this.http.userAgent,
    };
    if (sendAuth) headers.authorization = this.http.authorization();
    if (lastEventId !== null) headers['last-event-id'] = lastEventId;
    const res = await this.http.streamAgent.request({
      origin: u.origin,
      path: u.pathname + u.search,
      method: 'GET',
      headers,
      signal,
      headersTimeout: this.http.headersMs,
      bodyTimeout: this.http.streamIdleMs,
    });
    if (res.statusCode === 200) return res;
    const text = await res.body.text().catch(() => '');
    const e = this.http.classify('read', 'GET', url, { status: res.statusCode, headers: res.headers, text });
    if (e.kind === 'permanent') throw e;
    if (e.kind === 'rate_limited' && e.retryAfterMs !== null)
      await this.http.sleep(Math.min(e.retryAfterMs, this.http.rateLimit.maxWaitMs), signal);
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
    let reason: string | null = null;
    try {
      await readSse(
        res.body,
        (ev) => {
          cursor.progressed = true;
          cursor.lastEventId = ev.id ?? cursor.lastEventId;
          if (ev.event === 'error') cursor.errorDetail = detailOf(ev.data);
          const stop = () => {
            if (ev.event !== 'done') return;
            reason = doneReason(ev.data);
            return 'stop' as const;
          };
          let handled: void | Promise<void>;
          try {
            handled = opts.onEvent(ev);
          } catch (err) {
            throw new HandlerError(err);
          }
          if (!handled) return stop();
          return handled.then(stop, (err: unknown) => {
            throw new HandlerError(err);
          });
        },
        cursor.lastEventId,
      );
      return reason;
    } finally {
      // Ends the connection if we leave early (handler threw, abort); a no-op after EOF.
      if (!res.body.destroyed) res.body.destroy();
    }
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
