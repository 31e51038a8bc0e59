import { CliError, EXIT, GatewayClient, pyreCommand } from './client';
import { follow, watchHint } from './follow';
import { TASK_KINDS } from '../tasks/events';
import type { TaskJson } from '../tasks/task';

export { FOLLOWED_EVENTS, follow } from './follow';

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
  /** Unset: what the API does without `type` (text). */
  type?: (typeof TYPES)[number];
  model?: string;
  param: string[];
  url?: string;
  token?: string;
  json?: boolean;
  detach?: boolean;
  timeout?: number;
  quiet?: boolean;
}

/** Create the task over REST, follow it on `task:<id>`, print the result. Resolves to the exit code. */
export async function submit(promptWords: string[], opts: SubmitOptions): Promise<number> {
  const client = new GatewayClient(opts);
  const prompt = await promptFrom(promptWords);
  if (prompt.trim() === '') throw new CliError('the prompt is empty', EXIT.usage);

  // The models tell how to type --param values (and which is the default).
  let models: ModelInfo[] = [];
  if (opts.param.length) models = (await client.request<{ data: ModelInfo[] }>('GET', '/api/models')).data;
  const type = opts.type ?? 'text';
  const model = models.find((m) => (opts.model ? m.name === opts.model : m.type === type && m.default));
  const input: Record<string, unknown> = { ...(opts.type ? { type } : {}), prompt, ...parseParams(opts.param, model) };
  if (opts.model) input.model = opts.model;

  const created = await client
    .request<{ task_id: string; data: TaskJson }>('POST', '/api/tasks', { input_data: input })
    .catch((err: unknown) => {
      // The API's pointer for an unknown model is its REST route; here the command says the same.
      if (err instanceof CliError)
        throw new CliError(err.message.replace('GET /api/models', `\`${pyreCommand()} models\``), err.exitCode);
      throw err;
    });
  const taskId = created.task_id;
  const log = (s: string) => {
    if (!opts.quiet) process.stderr.write(`${s}\n`);
  };
  log(`task ${taskId} (${created.data.model}) queued`);
  if (opts.detach) {
    log(`detached; ${watchHint(taskId)}`);
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
