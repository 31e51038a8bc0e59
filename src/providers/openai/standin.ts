import http from 'node:http';
import type { AddressInfo } from 'node:net';
import { randomBytes } from 'node:crypto';
import type { Logger } from '../../log';

/**
 * A local OpenAI-compatible chat completions server, for tests and demo mode: `POST
 * /v1/chat/completions` with `stream: true` streams a made-up answer a word at a time (usage in
 * the last chunk when `stream_options.include_usage`), `GET /v1/models` lists what it was asked
 * for. Faults for tests: 429s with `Retry-After`, an error status, a stream broken mid-way; a
 * prompt with `[[fail]]` gets an error chunk mid-stream, one with `[[break]]` a broken stream.
 */
export interface OpenAIStandinOptions {
  port?: number;
  host?: string;
  /** Time between two streamed words. Default 20 ms. */
  wordMs?: number;
  /** Words in an answer when `max_tokens` does not say fewer. Default 40. */
  words?: number;
  logger?: Logger;
}

export interface RecordedCompletion {
  at: number;
  model: string;
  prompt: string;
  status: number;
  /** Words sent before the end (or the break). */
  sent: number;
  /** The client closed the connection before the answer ended (a cancel). */
  aborted: boolean;
  completed: boolean;
}

export interface OpenAIStandinFaults {
  /** The next `times` requests are answered 429 with `Retry-After: retryAfterS`. */
  rateLimit?: { times: number; retryAfterS: number };
  /** The next `times` requests are answered `status` (an OpenAI-style error body). */
  fail?: { times: number; status: number };
  /** The next `times` streams are cut (socket destroyed) after `words` words. */
  breakAfter?: { times: number; words: number };
}

export interface OpenAIStandin {
  /** The base URL, `/v1` included: OPENAI_BASE_URL. */
  url: string;
  apiKey: string;
  /** Completion requests received, oldest first. */
  completions(): RecordedCompletion[];
  faults(f: OpenAIStandinFaults): void;
  /** Slows or speeds the streaming (ms per word). */
  setWordMs(ms: number): void;
  close(): Promise<void>;
}

const WORDS =
  'pyre streams this answer from a stand-in that speaks the chat completions API one word at a time so that every delta can be seen arriving over the channel'.split(
    ' ',
  );

export async function startOpenAIStandin(opts: OpenAIStandinOptions = {}): Promise<OpenAIStandin> {
  const apiKey = `sk-standin-${randomBytes(12).toString('hex')}`;
  let wordMs = opts.wordMs ?? 20;
  const log: RecordedCompletion[] = [];
  const faults: OpenAIStandinFaults = {};

  const take = <K extends keyof OpenAIStandinFaults>(k: K): OpenAIStandinFaults[K] | undefined => {
    const f = faults[k];
    if (!f || f.times <= 0) return undefined;
    f.times--;
    return f;
  };
  const sockets = new Set<import('node:net').Socket>();

  const server = http.createServer((req, res) => {
    const chunks: Buffer[] = [];
    req.on('data', (c: Buffer) => chunks.push(c));
    req.on('end', () => {
      void handle(req, res, Buffer.concat(chunks).toString('utf8')).catch((err) => {
        opts.logger?.warn({ err: String(err) }, 'openai stand-in failed');
        if (!res.headersSent) error(res, 500, 'server_error', 'stand-in failure');
        else res.destroy();
      });
    });
  });
  server.on('connection', (s) => {
    sockets.add(s);
    s.on('close', () => sockets.delete(s));
  });

  function error(res: http.ServerResponse, status: number, type: string, message: string, headers = {}) {
    res.writeHead(status, { 'content-type': 'application/json', ...headers });
    res.end(JSON.stringify({ error: { message, type, param: null, code: null } }));
  }

  async function handle(req: http.IncomingMessage, res: http.ServerResponse, body: string): Promise<void> {
    const path = (req.url ?? '').split('?')[0];
    if (req.headers.authorization !== `Bearer ${apiKey}`)
      return error(res, 401, 'invalid_request_error', 'Incorrect API key provided');
    if (req.method === 'GET' && path === '/v1/models') {
      res.writeHead(200, { 'content-type': 'application/json' });
      res.end(JSON.stringify({ object: 'list', data: [] }));
      return;
    }
    if (req.method !== 'POST' || path !== '/v1/chat/completions')
      return error(res, 404, 'invalid_request_error', `no route ${req.method} ${path}`);
    let b: {
      model?: unknown;
      messages?: Array<{ role?: string; content?: unknown }>;
      stream?: unknown;
      max_tokens?: unknown;
      stream_options?: { include_usage?: unknown };
    };
    try {
      b = JSON.parse(body);
    } catch {
      return error(res, 400, 'invalid_request_error', 'body is not JSON');
    }
    const prompt = String([...(b.messages ?? [])].reverse().find((m) => m.role === 'user')?.content ?? '');
    const rec: RecordedCompletion = {
      at: Date.now(),
      model: String(b.model ?? ''),
      prompt,
      status: 200,
      sent: 0,
      aborted: false,
      completed: false,
    };
    log.push(rec);
    const limited = take('rateLimit');
    if (limited) {
      rec.status = 429;
      return error(res, 429, 'requests', `Rate limit reached. Please try again in ${limited.retryAfterS}s.`, {
        'retry-after': String(limited.retryAfterS),
      });
    }
    const failed = take('fail');
    if (failed) {
      rec.status = failed.status;
      return error(res, failed.status, 'server_error', 'The stand-in was told to fail this request');
    }
    if (typeof b.model !== 'string' || !Array.isArray(b.messages) || b.stream !== true) {
      rec.status = 400;
      return error(res, 400, 'invalid_request_error', 'model, messages and stream: true are required');
    }
    await stream(res, b, rec);
  }

  async function stream(
    res: http.ServerResponse,
    b: { model?: unknown; max_tokens?: unknown; stream_options?: { include_usage?: unknown } },
    rec: RecordedCompletion,
  ): Promise<void> {
    const id = `chatcmpl-${randomBytes(8).toString('hex')}`;
    const max = typeof b.max_tokens === 'number' ? b.max_tokens : Infinity;
    const words = Array.from({ length: Math.min(max, opts.words ?? 40) }, (_, i) => WORDS[i % WORDS.length]!);
    const brk = take('breakAfter')?.words ?? (rec.prompt.includes('[[break]]') ? 3 : Infinity);
    const failAt = rec.prompt.includes('[[fail]]') ? 3 : Infinity;
    let closed = false;
    let broken = false;
    res.on('close', () => {
      closed = true;
      if (!rec.completed && !broken) rec.aborted = true;
    });
    res.writeHead(200, { 'content-type': 'text/event-stream', 'cache-control': 'no-cache' });
    const chunk = (o: Record<string, unknown>) =>
      res.write(`data: ${JSON.stringify({ id, object: 'chat.completion.chunk', model: b.model, ...o })}\n\n`);
    chunk({ choices: [{ index: 0, delta: { role: 'assistant', content: '' }, finish_reason: null }] });
    for (let i = 0; i < words.length; i++) {
      await new Promise((r) => setTimeout(r, wordMs));
      if (closed) return;
      if (i === brk) {
        broken = true;
        res.destroy(); // mid-stream, no [DONE]
        return;
      }
      if (i === failAt) {
        res.write(
          `data: ${JSON.stringify({ error: { message: 'The model crashed (stand-in [[fail]])', type: 'server_error' } })}\n\n`,
        );
        rec.completed = true;
        res.end();
        return;
      }
      chunk({ choices: [{ index: 0, delta: { content: `${i ? ' ' : ''}${words[i]}` }, finish_reason: null }] });
      rec.sent++;
    }
    chunk({ choices: [{ index: 0, delta: {}, finish_reason: 'stop' }] });
    const promptTokens = rec.prompt.split(/\s+/).filter(Boolean).length;
    if (b.stream_options?.include_usage === true)
      chunk({
        choices: [],
        usage: { prompt_tokens: promptTokens, completion_tokens: rec.sent, total_tokens: promptTokens + rec.sent },
      });
    rec.completed = true;
    res.end('data: [DONE]\n\n');
  }

  await new Promise<void>((resolve) => server.listen(opts.port ?? 0, opts.host ?? '127.0.0.1', resolve));
  const a = server.address() as AddressInfo;
  return {
    url: `http://${a.family === 'IPv6' ? `[${a.address}]` : a.address}:${a.port}/v1`,
    apiKey,
    completions: () => [...log],
    faults: (f) => Object.assign(faults, JSON.parse(JSON.stringify(f))),
    setWordMs: (ms) => {
      wordMs = ms;
    },
    close: () =>
      new Promise<void>((resolve) => {
        for (const s of sockets) s.destroy();
        server.close(() => resolve());
      }),
  };
}
