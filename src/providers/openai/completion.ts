import type { Dispatcher } from 'undici';
import { readSse } from '../http/sse';
import type { Prediction } from '../types';

/** Where a completion is: streaming, or ended (and how). */
export type CompletionStatus = 'processing' | 'succeeded' | 'failed' | 'canceled';

/**
 * One chat completion being streamed in this process: the text so far, the usage once reported,
 * and how it ended. The runner sees it as a prediction (`snapshot`), reads its text as a stream
 * (`follow`) and cancels it (`cancel`: the request is aborted).
 */
export class Completion {
  status: CompletionStatus = 'processing';
  text = '';
  error: string | null = null;
  usage: Prediction['usage'] = null;
  finishReason: string | null = null;
  /** The endpoint's own id (`chatcmpl-...`), from the first chunk. */
  upstreamId: string | null = null;
  readonly createdAt = new Date().toISOString();
  completedAt: string | null = null;
  readonly abort = new AbortController();
  private readonly waiters = new Set<() => void>();

  constructor(
    readonly id: string,
    readonly model: string,
    readonly input: Record<string, unknown>,
  ) {}

  /** The completion as a prediction; `output` is the text so far. */
  snapshot(): Prediction {
    return {
      id: this.id,
      model: this.model,
      version: null,
      status: this.status,
      rawStatus: this.status,
      input: this.input,
      output: this.text,
      error: this.error,
      logs: null,
      urls: { stream: streamUrl(this.id) },
      created_at: this.createdAt,
      started_at: this.createdAt,
      completed_at: this.completedAt,
      metrics: { finish_reason: this.finishReason, upstream_id: this.upstreamId },
      data_removed: false,
      webhook: null,
      deadline: null,
      raw: {},
      usage: this.usage,
    };
  }

  /** Reads the streamed answer (`data: {chunk}` ... `data: [DONE]`) to its end. Never rejects. */
  async read(res: Dispatcher.ResponseData): Promise<void> {
    let done = false;
    try {
      if (/json/i.test(String(res.headers['content-type'] ?? ''))) {
        // A server that ignored `stream: true` answers the whole completion at once.
        this.take(JSON.parse(await res.body.text()), 'message');
        done = true;
      } else {
        let failed = false;
        await readSse(res.body, (ev) => {
          if (ev.data.trim() === '[DONE]') {
            done = true;
            return 'stop';
          }
          let chunk: unknown;
          try {
            chunk = JSON.parse(ev.data);
          } catch {
            return; // a keep-alive or a line this code does not know: not text
          }
          if (this.take(chunk, 'delta') !== 'error') return;
          failed = true;
          return 'stop';
        });
        if (failed) return;
      }
      if (this.status !== 'processing') return;
      if (done || this.finishReason !== null) this.succeed();
      else this.fail('completion interrupted: the stream ended before its last chunk');
    } catch (err) {
      if (this.status !== 'processing') return; // canceled: the abort broke the read
      const code = (err as { code?: string }).code ?? (err as Error).name;
      this.fail(`completion interrupted: the stream broke (${code}) after ${this.text.length} characters`);
    } finally {
      if (!res.body.destroyed) res.body.destroy();
    }
  }

  /** Stops it (the request is aborted; the endpoint stops generating). */
  cancel(): void {
    if (this.status !== 'processing') return;
    this.end('canceled');
    this.abort.abort(new Error('completion canceled'));
  }

  /** Resolves at the next change (more text, or the end); rejects when `signal` aborts. */
  changed(signal?: AbortSignal): Promise<void> {
    return new Promise<void>((resolve, reject) => {
      if (signal?.aborted) return reject(signal.reason);
      const onAbort = () => {
        this.waiters.delete(wake);
        reject(signal!.reason);
      };
      const wake = () => {
        signal?.removeEventListener('abort', onAbort);
        resolve();
      };
      this.waiters.add(wake);
      signal?.addEventListener('abort', onAbort, { once: true });
    });
  }

  /** One chunk (`delta`) or a whole answer (`message`); 'error' when it reports one. */
  private take(chunk: unknown, part: 'delta' | 'message'): 'ok' | 'error' {
    if (!chunk || typeof chunk !== 'object') return 'ok';
    const c = chunk as {
      id?: unknown;
      error?: { message?: unknown } | null;
      choices?: Array<{ delta?: { content?: unknown }; message?: { content?: unknown }; finish_reason?: unknown }>;
      usage?: { prompt_tokens?: unknown; completion_tokens?: unknown } | null;
    };
    if (c.error) {
      const said = typeof c.error.message === 'string' ? c.error.message : JSON.stringify(c.error);
      this.fail(said);
      return 'error';
    }
    if (typeof c.id === 'string') this.upstreamId ??= c.id;
    const choice = Array.isArray(c.choices) ? c.choices[0] : undefined;
    const content = choice?.[part]?.content;
    if (typeof content === 'string' && content !== '') this.text += content;
    if (typeof choice?.finish_reason === 'string') this.finishReason = choice.finish_reason;
    if (c.usage && typeof c.usage === 'object') {
      const n = (v: unknown) => (typeof v === 'number' && Number.isInteger(v) && v >= 0 ? v : null);
      this.usage = { prompt_tokens: n(c.usage.prompt_tokens), completion_tokens: n(c.usage.completion_tokens) };
    }
    this.wake();
    return 'ok';
  }

  private succeed(): void {
    if (this.finishReason === 'content_filter')
      return this.fail("the provider's safety system stopped the completion (finish_reason content_filter)");
    this.end('succeeded');
  }

  private fail(error: string): void {
    this.error = error;
    this.end('failed');
  }

  private end(status: CompletionStatus): void {
    this.status = status;
    this.completedAt = new Date().toISOString();
    this.wake();
  }

  private wake(): void {
    const waiters = [...this.waiters];
    this.waiters.clear();
    for (const w of waiters) w();
  }
}

const STREAM_SCHEME = 'completion:';

/** The stream "URL" of a completion: it is read from memory, not over the network. */
export function streamUrl(id: string): string {
  return `${STREAM_SCHEME}${id}`;
}

export function completionIdOf(url: string): string | null {
  return url.startsWith(STREAM_SCHEME) ? url.slice(STREAM_SCHEME.length) : null;
}
