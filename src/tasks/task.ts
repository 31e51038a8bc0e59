import type { TaskType } from './models';

export type TaskStatus = 'queued' | 'processing' | 'succeeded' | 'failed' | 'canceled';
export const TASK_STATUSES: readonly TaskStatus[] = ['queued', 'processing', 'succeeded', 'failed', 'canceled'];
export const TERMINAL: ReadonlySet<TaskStatus> = new Set(['succeeded', 'failed', 'canceled']);

export interface TaskError {
  code: string;
  message: string;
}

export type TaskOutput = { urls: string[] } | { text: string };

/** A task as stored. */
export interface TaskRow {
  id: string;
  pos: string | number;
  user_id: string;
  task_type: TaskType;
  model: string;
  provider_model: string;
  status: TaskStatus;
  progress: number | null;
  input_data: Record<string, unknown>;
  provider_input: Record<string, unknown>;
  output: TaskOutput | null;
  provider_output: unknown;
  error: TaskError | null;
  attempts: number;
  max_attempts: number;
  prediction_id: string | null;
  create_attempted_at: Date | null;
  cancel_requested: boolean;
  run_after: Date;
  lease_owner: string | null;
  lease_expires_at: Date | null;
  last_seq: number;
  inserted_at: Date;
  updated_at: Date;
  started_at: Date | null;
  completed_at: Date | null;
}

/** A task as clients see it (the contract's Task object). */
export interface TaskJson {
  id: string;
  task_type: TaskType;
  model: string;
  status: TaskStatus;
  progress: number | null;
  input_data: Record<string, unknown>;
  output: TaskOutput | null;
  error: TaskError | null;
  attempts: number;
  /** A cancel was asked for and is on its way to the provider (status changes when it lands). */
  cancel_requested: boolean;
  inserted_at: string;
  updated_at: string;
  started_at: string | null;
  completed_at: string | null;
  topic: string;
  last_seq: number;
}

const iso = (d: Date | string | null): string | null => (d === null ? null : new Date(d).toISOString());

export function taskJson(row: TaskRow): TaskJson {
  return {
    id: row.id,
    task_type: row.task_type,
    model: row.model,
    status: row.status,
    progress: row.progress,
    input_data: row.input_data,
    output: row.output,
    error: row.error,
    attempts: row.attempts,
    cancel_requested: Boolean(row.cancel_requested),
    inserted_at: iso(row.inserted_at)!,
    updated_at: iso(row.updated_at)!,
    started_at: iso(row.started_at),
    completed_at: iso(row.completed_at),
    topic: `task:${row.id}`,
    last_seq: row.last_seq,
  };
}

/** One entry of a task's event log; `seq` is gap-free per task. */
export interface TaskEvent {
  task_id: string;
  user_id: string;
  seq: number;
  event: string;
  payload: Record<string, unknown>;
  inserted_at: string;
}

/** The final result event's name for a task type. */
export function responseEvent(taskType: TaskType): string {
  return `${taskType.replace('_gen', '')}_response`;
}
