import { Socket } from 'phoenix';
import WebSocket from 'ws';
import { CliError, EXIT, GatewayClient } from './client';
import { ProgressLine } from './progress';
import { RESPONSE_EVENTS, TASK_EVENT_NAMES, TASK_KINDS } from '../tasks/events';
import type { TaskJson } from '../tasks/task';

/** What the task channel pushes; every event carries some of these (docs/contract.md). */
interface TaskEventPayload {
  seq?: number;
  status?: string;
  progress?: number | null;
  message?: string;
  delta?: string;
  output?: { urls?: string[]; text?: string } | null;
  error?: { code?: string; message?: string } | null;
}

/** The kinds of task, as `--type` takes them. */
export const TYPES = TASK_KINDS.map((k) => k.kind);

interface ModelInfo {
  name: string;
  type: string;
  default: boolean;
  input_schema: { properties?: Record<string, { type?: string | string[]; items?: { type?: string } }> };
}

/**
 * `k=v` pairs as the model's schema types them: numbers, booleans and lists become JSON
 * values; anything else stays a string. A name the model does not have is sent as given,
 * so the gateway can say so.
 */
export function parseParams(pairs: string[], model: ModelInfo | undefined): Record<string, unknown> {
  const out: Record<string, unknown> = {};
  for (const pair of pairs) {
    const eq = pair.indexOf('=');
    if (eq <= 0) throw new CliError(`--param ${JSON.stringify(pair)}: expected name=value`, EXIT.usage);
    const name = pair.slice(0, eq);
    const raw = pair.slice(eq + 1);
    if (name === 'prompt' || name === 'type' || name === 'model') {
      throw new CliError(
        `--param ${name}: give it as ${name === 'prompt' ? 'the PROMPT argument' : `--${name}`}`,
        EXIT.usage,
      );
    }
    const prop = model?.input_schema.properties?.[name];
    const t = [prop?.type ?? 'unknown'].flat()[0];
    out[name] = coerce(raw, t, prop?.items?.type);
  }
  return out;
}

function coerce(raw: string, type: string, itemType?: string): unknown {
  switch (type) {
    case 'integer':
    case 'number':
      return raw.trim() !== '' && Number.isFinite(Number(raw)) ? Number(raw) : raw;
    case 'boolean':
      if (/^(true|yes|1|on)$/i.test(raw)) return true;
      if (/^(false|no|0|off)$/i.test(raw)) return false;
      return raw;
    case 'array':
      return raw === '' ? [] : raw.split(',').map((s) => coerce(s.trim(), itemType ?? 'string'));
    case 'string':
      return raw;
    default:
      try {
        return JSON.parse(raw);
      } catch {
        return raw;
      }
  }
}

export interface SubmitOptions {
  type: (typeof TYPES)[number];
  model?: string;
  param: string[];
  url?: string;
  token?: string;
  json?: boolean;
  detach?: boolean;
  timeout?: number;
  quiet?: boolean;
}

/** The final result events (the contract, src/tasks/events.ts). */
const RESPONSES = new Set<string>(RESPONSE_EVENTS);

/** The events `follow` listens to on `task:<id>`: every task event. */
export const FOLLOWED_EVENTS: readonly string[] = TASK_EVENT_NAMES;

/** Create the task over REST, follow it on `task:<id>`, print the result. Resolves to the exit code. */
export async function submit(promptWords: string[], opts: SubmitOptions): Promise<number> {
  const client = new GatewayClient(opts);
  const prompt = await promptFrom(promptWords);
  if (prompt.trim() === '') throw new CliError('the prompt is empty', EXIT.usage);

  // The models tell how to type --param values (and which is the default).
  let models: ModelInfo[] = [];
  if (opts.param.length) models = (await client.request<{ data: ModelInfo[] }>('GET', '/api/models')).data;
  const model = models.find((m) => (opts.model ? m.name === opts.model : m.type === opts.type && m.default));
  const input: Record<string, unknown> = { type: opts.type, prompt, ...parseParams(opts.param, model) };
  if (opts.model) input.model = opts.model;

  const created = await client.request<{ task_id: string; data: TaskJson }>('POST', '/api/tasks', {
    input_data: input,
  });
  const taskId = created.task_id;
  const log = (s: string) => {
    if (!opts.quiet) process.stderr.write(`${s}\n`);
  };
  log(`task ${taskId} (${created.data.model}) queued`);
  if (opts.detach) {
    process.stdout.write(`${taskId}\n`);
    return EXIT.ok;
  }
  return follow(client, taskId, created.data, opts);
}

async function promptFrom(words: string[]): Promise<string> {
  if (words.length === 1 && words[0] === '-') {
    const chunks: Buffer[] = [];
    for await (const c of process.stdin) chunks.push(c as Buffer);
    return Buffer.concat(chunks).toString('utf8').trim();
  }
  return words.join(' ');
}

/** Follows a task on its channel until its final event; prints the result. */
export function follow(
  client: GatewayClient,
  taskId: string,
  task: TaskJson,
  opts: Pick<SubmitOptions, 'json' | 'timeout' | 'quiet'>,
): Promise<number> {
  const isText = task.task_type === 'text_gen';
  const bar = opts.quiet ? null : new ProgressLine(process.stderr, task.model);
  bar?.update(task.status, task.progress);
  let streamed = '';
  let lastSeq = 0;
  let lostSince: number | null = null;

  const socket = new Socket(client.socketUrl(), {
    transport: WebSocket as unknown as typeof globalThis.WebSocket,
    params: client.token ? { token: client.token } : {},
    reconnectAfterMs: (tries: number) => [200, 500, 1000, 2000][tries - 1] ?? 3000,
    rejoinAfterMs: (tries: number) => [200, 500, 1000][tries - 1] ?? 2000,
  });

  return new Promise<number>((resolve) => {
    let finished = false;
    const timers: NodeJS.Timeout[] = [];
    const finish = (code: number, message?: string) => {
      if (finished) return;
      finished = true;
      for (const t of timers) clearTimeout(t);
      clearInterval(watchdog);
      process.removeListener('SIGINT', onInterrupt);
      bar?.done();
      if (message) process.stderr.write(`pyre: ${message}\n`);
      socket.disconnect(() => resolve(code));
      // disconnect's callback may not run if the socket never opened
      setTimeout(() => resolve(code), 200).unref();
    };

    const onInterrupt = () =>
      finish(EXIT.interrupted, `interrupted; task ${taskId} keeps running (see \`pyre tasks\`)`);
    process.once('SIGINT', onInterrupt);
    if (opts.timeout)
      timers.push(
        setTimeout(
          () => finish(EXIT.timeout, `task ${taskId} did not finish within ${opts.timeout} s; it keeps running`),
          opts.timeout * 1000,
        ),
      );

    // phoenix.js reconnects for ever; a command gives up after a while without a connection.
    const GIVE_UP_MS = Number(process.env.PYRE_RECONNECT_GIVE_UP_MS ?? 15_000);
    socket.onError(() => {
      lostSince ??= Date.now();
    });
    socket.onOpen(() => {
      lostSince = null;
    });
    const watchdog = setInterval(() => {
      if (lostSince !== null && Date.now() - lostSince > GIVE_UP_MS) {
        finish(
          EXIT.unavailable,
          `lost the realtime connection to ${client.url}; task ${taskId} keeps running (see \`pyre tasks\`)`,
        );
      }
    }, 250);

    // From seq 0: everything the task did is replayed, then live events follow, once each.
    const channel = socket.channel(`task:${taskId}`, () => ({ last_seq: lastSeq }));
    const onEvent = (event: string) => (p: TaskEventPayload) => {
      if (typeof p.seq === 'number') {
        if (p.seq <= lastSeq) return;
        lastSeq = p.seq;
      }
      if (event === 'status') bar?.update(p.status, p.progress ?? undefined);
      else if (event === 'progress') bar?.update(undefined, p.progress);
      else if (event === 'text_delta' && !opts.json) {
        if (streamed === '') bar?.clear();
        streamed += p.delta ?? '';
        process.stdout.write(p.delta ?? '');
      } else if (RESPONSES.has(event)) void done(p);
    };
    for (const ev of FOLLOWED_EVENTS) channel.on(ev, onEvent(ev));

    const done = async (p: TaskEventPayload) => {
      if (p.status === 'success') {
        if (opts.json) {
          const { data } = await client
            .request<{ data: unknown }>('GET', `/api/tasks/${taskId}`)
            .catch(() => ({ data: { id: taskId, output: p.output } }));
          bar?.done();
          process.stdout.write(`${JSON.stringify(data, null, 2)}\n`);
        } else if (isText) {
          const text: string = p.output?.text ?? '';
          // Deltas already printed what they carried; print what they did not.
          process.stdout.write(text.startsWith(streamed) ? text.slice(streamed.length) : streamed ? `\n${text}` : text);
          if (!(streamed + text).endsWith('\n')) process.stdout.write('\n');
        } else {
          bar?.done();
          for (const u of p.output?.urls ?? []) process.stdout.write(`${u}\n`);
        }
        finish(EXIT.ok);
      } else {
        if (isText && streamed && !streamed.endsWith('\n')) process.stdout.write('\n');
        const err = p.error ?? {};
        const canceled = err.code === 'canceled';
        finish(
          EXIT.failure,
          canceled
            ? `task ${taskId} was canceled`
            : `task ${taskId} failed: ${err.code ?? 'error'}: ${err.message ?? 'no reason given'}`,
        );
      }
    };

    channel
      .join(10_000)
      .receive('error', (r: { reason?: string }) => {
        const reason = r?.reason ?? JSON.stringify(r);
        finish(reason === 'unauthorized' ? EXIT.noperm : EXIT.failure, `could not follow task ${taskId}: ${reason}`);
      })
      .receive('timeout', () => {
        lostSince ??= Date.now();
      });
    socket.connect();
  });
}
