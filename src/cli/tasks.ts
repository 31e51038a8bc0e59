import { GatewayClient, pyreCommand, type ClientOptions } from './client';
import type { TaskJson } from '../tasks/task';

export interface TasksOptions extends ClientOptions {
  status?: string;
  limit?: number;
  cursor?: string;
  json?: boolean;
}

export function age(iso: string, now = Date.now()): string {
  const s = Math.max(0, Math.round((now - new Date(iso).getTime()) / 1000));
  if (s < 60) return `${s}s`;
  if (s < 3600) return `${Math.floor(s / 60)}m`;
  if (s < 86400) return `${Math.floor(s / 3600)}h`;
  return `${Math.floor(s / 86400)}d`;
}

export function oneLine(s: string, max: number): string {
  const flat = s.replace(/\s+/g, ' ').trim();
  return flat.length > max ? `${flat.slice(0, max - 1)}…` : flat;
}

/** A failed task's error in one line: `content_refused: the request was refused …`. */
export function errorLine(t: Pick<TaskJson, 'error'>): string {
  return t.error ? `${t.error.code}: ${oneLine(t.error.message, 100)}` : '';
}

/**
 * The tasks as a table, newest first; under a failed task (not a canceled one) a line with its
 * error, indented so that a row still starts with an id.
 */
export function taskTable(tasks: TaskJson[]): string {
  const rows = tasks.map((t) => [
    t.id,
    t.status,
    t.status === 'succeeded' ? '100%' : t.progress === null ? '-' : `${t.progress}%`,
    t.model,
    age(t.inserted_at),
    oneLine(String(t.input_data?.prompt ?? ''), 48),
  ]);
  const head = ['ID', 'STATUS', 'PROG', 'MODEL', 'AGE', 'PROMPT'];
  const widths = head.map((h, i) => Math.max(h.length, ...rows.map((r) => r[i]!.length)));
  const fmt = (r: string[]) => r.map((c, i) => (i === r.length - 1 ? c : c.padEnd(widths[i]!))).join('  ');
  const lines = [fmt(head)];
  rows.forEach((r, i) => {
    lines.push(fmt(r));
    if (tasks[i]!.status === 'failed') lines.push(`  error: ${errorLine(tasks[i]!)}`);
  });
  return `${lines.join('\n')}\n`;
}

/** `pyre tasks`: the caller's tasks, newest first, as a table (or JSON). */
export async function listTasks(opts: TasksOptions): Promise<void> {
  const client = new GatewayClient(opts);
  const q = new URLSearchParams();
  if (opts.status) q.set('status', opts.status);
  if (opts.limit) q.set('limit', String(opts.limit));
  if (opts.cursor) q.set('cursor', opts.cursor);
  const page = await client.request<{ data: TaskJson[]; next_cursor: string | null }>(
    'GET',
    `/api/tasks${q.size ? `?${q}` : ''}`,
  );
  if (opts.json) {
    process.stdout.write(`${JSON.stringify(page, null, 2)}\n`);
    return;
  }
  if (page.data.length === 0) {
    process.stderr.write('no tasks\n');
    return;
  }
  process.stdout.write(taskTable(page.data));
  if (page.next_cursor)
    process.stderr.write(
      `(older tasks: ${pyreCommand()} tasks --cursor ${page.next_cursor}${opts.limit ? ` --limit ${opts.limit}` : ''}${opts.status ? ` --status ${opts.status}` : ''})\n`,
    );
}
