import { randomUUID } from 'node:crypto';
import { ApiClient, type ApiClientOptions } from '../http/api-client';
import {
  ProviderError,
  type CreatePredictionRequest,
  type OutputFile,
  type Prediction,
  type Provider,
  type RequestOptions,
  type StreamOptions,
  type StreamResult,
} from '../types';
import { Completion, completionIdOf } from './completion';

export const DEFAULT_OPENAI_BASE_URL = 'https://api.openai.com/v1';

export interface OpenAIClientOptions extends Omit<ApiClientOptions, 'name' | 'baseUrl'> {
  /** Up to and including `/v1`: OPENAI_BASE_URL. */
  baseUrl?: string;
  /** How long an ended completion stays readable (the run reads its end). Default 10 min. */
  keepEndedMs?: number;
}

/**
 * An OpenAI-compatible chat completions endpoint (OpenAI, vLLM, Ollama, llama.cpp's server,
 * OpenRouter) as a provider. A create is `POST /chat/completions` with `stream: true`: once the
 * endpoint answers 200 the completion streams in the background, here, and the runner sees it as
 * a prediction (get, stream, cancel read and stop it in memory). There is nothing to resume it
 * from elsewhere: after a restart `get` and `findCreated` reject as `interrupted`, and the task
 * fails with `completion_interrupted` rather than being sent (and billed) again.
 */
export class OpenAIClient implements Provider {
  readonly baseUrl: string;
  readonly pace: ApiClient['pace'];
  private readonly http: ApiClient;
  private readonly completions = new Map<string, Completion>();
  /** Requests this process sent that certainly made no completion (answered with an error), by request. */
  private readonly madeNothing = new Map<string, number>();
  private readonly keepEndedMs: number;

  constructor(opts: OpenAIClientOptions) {
    this.http = new ApiClient({
      ...opts,
      name: 'OpenAI-compatible endpoint',
      baseUrl: opts.baseUrl ?? DEFAULT_OPENAI_BASE_URL,
    });
    this.baseUrl = this.http.baseUrl;
    this.pace = this.http.pace;
    this.keepEndedMs = opts.keepEndedMs ?? 10 * 60_000;
  }

  /**
   * Sends the completion request. 429s are waited out (`Retry-After`), an answered 5xx is
   * retried (the endpoint made nothing); a request lost after sending is `ambiguous_create`.
   */
  async create(req: CreatePredictionRequest): Promise<Prediction> {
    const c = new Completion(`oai-${randomUUID()}`, req.model, req.input);
    const url = `${this.baseUrl}/chat/completions`;
    const body = JSON.stringify({
      ...req.input,
      model: req.model,
      stream: true,
      stream_options: { include_usage: true },
    });
    const signal = req.signal ? AbortSignal.any([req.signal, c.abort.signal]) : c.abort.signal;
    const startedAt = Date.now();
    let res;
    try {
      res = await this.http.exchange(
        'create',
        'POST',
        url,
        { body, signal, headers: { accept: 'text/event-stream' }, bodyTimeout: this.http.streamIdleMs, stream: true },
        async (r) => r,
      );
    } catch (err) {
      // Answered with an error (or never sent): no completion was made, so a retry's findCreated
      // may say so; an answered 5xx is an ordinary transient failure.
      if (err instanceof ProviderError && (err.status !== null || err.kind !== 'ambiguous_create'))
        this.remember(req, startedAt);
      if (err instanceof ProviderError && err.kind === 'ambiguous_create' && err.status !== null)
        throw new ProviderError({ ...err, kind: 'transient', message: err.message, cause: err });
      throw err;
    }
    this.completions.set(c.id, c);
    void c.read(res).finally(() => {
      setTimeout(() => this.completions.delete(c.id), this.keepEndedMs).unref();
    });
    return c.snapshot();
  }

  async get(id: string): Promise<Prediction> {
    return this.find(id, 'GET').snapshot();
  }

  async cancel(id: string): Promise<Prediction> {
    const c = this.completions.get(id);
    if (!c) return { ...new Completion(id, '', {}).snapshot(), status: 'canceled', rawStatus: 'canceled' };
    c.cancel();
    return c.snapshot();
  }

  /** The completion's text as `output` events from its start, then `done`. */
  async stream(url: string, opts: StreamOptions): Promise<StreamResult> {
    const c = this.find(completionIdOf(url) ?? url, 'GET');
    let sent = 0;
    for (;;) {
      if (opts.signal?.aborted) throw opts.signal.reason;
      if (c.text.length > sent) {
        const data = c.text.slice(sent);
        sent = c.text.length;
        await opts.onEvent({ event: 'output', id: String(sent), data });
        continue;
      }
      if (c.status !== 'processing') {
        const reason = c.status === 'succeeded' ? 'done' : c.status === 'canceled' ? 'canceled' : 'error';
        await opts.onEvent({ event: 'done', id: null, data: reason === 'done' ? '{}' : JSON.stringify({ reason }) });
        return { reason, error: c.error, lastEventId: String(sent), reconnects: 0 };
      }
      await c.changed(opts.signal);
    }
  }

  /**
   * Null when this process sent the request since `since` and it was answered with an error (it
   * made nothing: send it again). Otherwise a completion cannot be looked up: the request may
   * have started one (billed), so it is not sent again.
   */
  async findCreated(req: CreatePredictionRequest, since: Date): Promise<Prediction | null> {
    const key = requestKey(req);
    const at = this.madeNothing.get(key);
    if (at !== undefined && at >= since.getTime() - 1000) {
      this.madeNothing.delete(key);
      return null;
    }
    throw new ProviderError({
      kind: 'interrupted',
      message:
        'completion interrupted: the answer to its request was lost, and a completion cannot be looked up; it is not sent again (it may have been billed)',
      method: 'POST',
      url: `${this.baseUrl}/chat/completions`,
    });
  }

  async openOutput(url: string, _opts?: RequestOptions): Promise<OutputFile> {
    throw new ProviderError({
      kind: 'permanent',
      message: 'chat completions produce text, not files',
      method: 'GET',
      url,
    });
  }

  async close(): Promise<void> {
    for (const c of this.completions.values()) c.cancel();
    this.completions.clear();
    await this.http.close();
  }

  private remember(req: CreatePredictionRequest, at: number): void {
    this.madeNothing.set(requestKey(req), at);
    if (this.madeNothing.size > 10_000) this.madeNothing.delete(this.madeNothing.keys().next().value!);
  }

  private find(id: string, method: string): Completion {
    const c = this.completions.get(id);
    if (c) return c;
    throw new ProviderError({
      kind: 'interrupted',
      message: `completion interrupted: ${id} is not streaming in this process (the gateway that streamed it stopped); a completion cannot be resumed, and it is not sent again, so it is not billed twice`,
      method,
      url: `${this.baseUrl}/chat/completions`,
    });
  }
}

function requestKey(req: CreatePredictionRequest): string {
  return JSON.stringify([req.model, req.input]);
}
