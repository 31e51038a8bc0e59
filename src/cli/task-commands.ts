/**
 * The commands for tasks that exist already: `pyre watch`, `get`, `cancel`, `events`, and
 * `pyre models`. Each talks to a running gateway over REST (and `watch` over its channel).
 */
import { CliError, EXIT, GatewayClient, pyreCommand, type ClientOptions } from './client';
import { follow, watchHint, type FollowOptions } from './follow';
import { age, errorLine, oneLine } from './tasks';
import type { TaskJson } from '../tasks/task';

const UUID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/i;

/** The task, or a clear "no such task" (another user's task is not found either). */
async function fetchTask(client: GatewayClient, id: string): Promise<TaskJson> {
  if (!UUID.test(id))
    throw new CliError(
      `${JSON.stringify(id)} is not a task id (a UUID, as \`${pyreCommand()} tasks\` lists)`,
      EXIT.usage,
    );
  try {
    return (await client.request<{ data: TaskJson }>('GET', `/api/tasks/${id.toLowerCase()}`)).data;
  } catch (err) {
    if (err instanceof CliError && err.message === 'not found')
      throw new CliError(`no task ${id} (see \`${pyreCommand()} tasks\`)`, EXIT.usage);
    throw err;
  }
}

const json = (value: unknown) => process.stdout.write(`${JSON.stringify(value, null, 2)}\n`);

/** `pyre watch <id>`: follow a task (running or finished) to its end, as `submit` does. */
export async function watchTask(id: string, opts: ClientOptions & FollowOptions): Promise<number> {
  const client = new GatewayClient(opts);
  const task = await fetchTask(client, id);
  if (!opts.quiet) process.stderr.write(`task ${task.id} (${task.model}) ${task.status}\n`);
  return follow(client, task.id, task, opts);
}

/** `pyre get <id>`: the task, one field a line (or the API's JSON). */
export async function getTask(id: string, opts: ClientOptions & { json?: boolean }): Promise<number> {
  const task = await fetchTask(new GatewayClient(opts), id);
  if (opts.json) {
    json(task);
    return EXIT.ok;
  }
  const rows: Array<[string, string]> = [
    ['id', task.id],
    ['status', `${task.status}${task.cancel_requested && task.status === 'processing' ? ' (cancel requested)' : ''}`],
    ['progress', task.progress === null ? '-' : `${task.progress}%`],
    ['model', `${task.model} (${task.task_type})`],
    ['prompt', oneLine(String(task.input_data?.prompt ?? ''), 200)],
    ['created', `${task.inserted_at} (${age(task.inserted_at)} ago)`],
  ];
  if (task.completed_at) rows.push(['completed', task.completed_at]);
  if (task.error) rows.push(['error', errorLine(task)]);
  const out = task.output;
  if (out && 'urls' in out) out.urls.forEach((u, i) => rows.push([i === 0 ? 'output' : '', u]));
  if (out && 'text' in out) rows.push(['output', oneLine(out.text, 200)]);
  process.stdout.write(rows.map(([k, v]) => `${k.padEnd(10)} ${v}`).join('\n') + '\n');
  return EXIT.ok;
}

/** `pyre cancel <id>`: ask for the cancel; say what became of the task. */
export async function cancelTask(id: string, opts: ClientOptions & { json?: boolean }): Promise<number> {
  const client = new GatewayClient(opts);
  const before = await fetchTask(client, id);
  const ended = ['succeeded', 'failed', 'canceled'].includes(before.status);
  const task = ended
    ? before
    : (await client.request<{ data: TaskJson }>('POST', `/api/tasks/${before.id}/cancel`)).data;
  if (opts.json) json(task);
  else if (ended) process.stderr.write(`task ${task.id} had already ended: ${task.status}\n`);
  else if (task.status === 'canceled') process.stderr.write(`task ${task.id} canceled\n`);
  else if (task.cancel_requested)
    process.stderr.write(`cancel requested; task ${task.id} ends once the provider stops it (${watchHint(task.id)})\n`);
  else process.stderr.write(`task ${task.id} ended before the cancel: ${task.status}\n`);
  return EXIT.ok;
}

interface StoredEvent {
  seq: number;
  event: string;
  inserted_at: string;
  payload: Record<string, unknown> & {
    status?: string;
    progress?: number | null;
    message?: string;
    delta?: string;
    output?: { urls?: string[]; text?: string } | null;
    error?: { code: string; message: string } | null;
  };
}

/** One event in a few words: `failed content_refused`, `42% step 5/12`, `"Hello"`. */
function summary(e: StoredEvent): string {
  const p = e.payload;
  const error = p.error ? ` ${p.error.code}: ${oneLine(p.error.message, 80)}` : '';
  switch (e.event) {
    case 'status':
      return `${p.status}${p.progress !== null && p.progress !== undefined ? ` ${p.progress}%` : ''}${error}`;
    case 'progress':
      return `${p.progress}%${p.message ? ` ${oneLine(p.message, 60)}` : ''}`;
    case 'text_delta':
      return JSON.stringify(p.delta ?? '');
    default:
      return `${p.status}${p.output?.urls ? ` ${p.output.urls.join(' ')}` : ''}${p.output?.text !== undefined ? ` ${JSON.stringify(oneLine(p.output.text, 60))}` : ''}${error}`;
  }
}

/** `pyre events <id>`: the task's event log (after `--after`), one event a line. */
export async function taskEvents(
  id: string,
  opts: ClientOptions & { json?: boolean; after?: number },
): Promise<number> {
  const client = new GatewayClient(opts);
  await fetchTask(client, id);
  const after = opts.after ? `?after_seq=${opts.after}` : '';
  const { data } = await client.request<{ data: StoredEvent[] }>(
    'GET',
    `/api/tasks/${id.toLowerCase()}/events${after}`,
  );
  if (opts.json) json(data);
  else
    process.stdout.write(
      data
        .map((e) => `${String(e.seq).padStart(4)}  ${e.inserted_at}  ${e.event.padEnd(14)} ${summary(e)}`)
        .join('\n') + (data.length ? '\n' : ''),
    );
  return EXIT.ok;
}

interface ModelJson {
  name: string;
  type: string;
  /** Absent from gateways older than the provider plug-ins (then Replicate). */
  provider?: string;
  provider_model: string;
  default: boolean;
  description?: string;
}

/** `pyre models`: what `--model` takes, per type, the default marked. */
export async function listModels(opts: ClientOptions & { json?: boolean }): Promise<number> {
  const { data } = await new GatewayClient(opts).request<{ data: ModelJson[] }>('GET', '/api/models');
  if (opts.json) {
    json(data);
    return EXIT.ok;
  }
  const rows = data.map((m) => [
    m.name,
    m.type,
    m.default ? 'yes' : '',
    `${m.provider_model} (${m.provider ?? 'replicate'})`,
    oneLine(m.description ?? '', 60),
  ]);
  // The provider model is shown with its provider (`openai/gpt-4.1 (replicate)`).
  const head = ['MODEL', 'TYPE', 'DEFAULT', 'PROVIDER MODEL', 'DESCRIPTION'];
  const widths = head.map((h, i) => Math.max(h.length, ...rows.map((r) => r[i]!.length)));
  const fmt = (r: string[]) => r.map((c, i) => (i === r.length - 1 ? c : c.padEnd(widths[i]!))).join('  ');
  process.stdout.write(`${[fmt(head), ...rows.map(fmt)].join('\n')}\n`);
  return EXIT.ok;
}
