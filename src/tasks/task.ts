import { z } from 'zod';
import {
  TASK_TYPES,
  taskErrorSchema,
  taskOutputSchema,
  taskStatusSchema,
  type TaskError,
  type TaskOutput,
  type TaskStatus,
  type TaskType,
} from './events';

export {
  TASK_STATUSES,
  responseEvent,
  type TaskError,
  type TaskEvent,
  type TaskOutput,
  type TaskStatus,
} from './events';

/** Tokens a completion used, as the provider reported them. */
export const taskUsageSchema = z
  .object({
    prompt_tokens: z.number().int().min(0).nullable(),
    completion_tokens: z.number().int().min(0).nullable(),
  })
  .describe('tokens the provider reported using (text tasks on providers that report it)');
export type TaskUsage = z.infer<typeof taskUsageSchema>;

export const TERMINAL: ReadonlySet<TaskStatus> = new Set(['succeeded', 'failed', 'canceled']);

/** A task as stored. */
export interface TaskRow {
  id: string;
  pos: string | number;
  user_id: string;
  task_type: TaskType;
  model: string;
  /** The provider the model runs on (`replicate`, `openai`). */
  provider: string;
  provider_model: string;
  status: TaskStatus;
  progress: number | null;
  input_data: Record<string, unknown>;
  provider_input: Record<string, unknown>;
  output: TaskOutput | null;
  provider_output: unknown;
  error: TaskError | null;
  /** The provider's own words about a failure, for operators (never in an API answer). */
  provider_error: string | null;
  /** Tokens the provider reported using (text), when it did. */
  usage: TaskUsage | null;
  attempts: number;
  max_attempts: number;
  prediction_id: string | null;
  create_attempted_at: Date | null;
  cancel_requested: boolean;
  run_after: Date;
  lease_owner: string | null;
  lease_expires_at: Date | null;
  last_seq: number;
  /** Characters (code points) announced in the task's text_delta events, joined. */
  text_length: number;
  inserted_at: Date;
  updated_at: Date;
  started_at: Date | null;
  completed_at: Date | null;
}

/** What a writer's lease check reads of a task's row (see TextAppend.may and MayWrite). */
export type LeaseView = Pick<TaskRow, 'id' | 'status' | 'lease_owner' | 'lease_expires_at'>;

/** What a text append reads of the rows it locks: the lease check, and where the text and events stand. */
export type TextRow = LeaseView & Pick<TaskRow, 'user_id' | 'last_seq' | 'text_length'>;

/** A task as clients see it (the contract's Task object; the OpenAPI document's `Task`). */
export const taskSchema = z.object({
  id: z.guid(),
  task_type: z.enum(TASK_TYPES as [TaskType, ...TaskType[]]),
  model: z.string(),
  status: taskStatusSchema,
  progress: z.number().int().min(0).max(100).nullable(),
  input_data: z.record(z.string(), z.unknown()).describe('the validated request: type, model, prompt, parameters'),
  output: taskOutputSchema.nullable(),
  error: taskErrorSchema.nullable(),
  attempts: z.number().int().min(0),
  cancel_requested: z
    .boolean()
    .describe('a cancel was asked for and is pending with the provider; `status` changes when it lands'),
  inserted_at: z.iso.datetime(),
  updated_at: z.iso.datetime(),
  started_at: z.iso.datetime().nullable(),
  completed_at: z.iso.datetime().nullable(),
  topic: z.string().describe('the channel topic, `task:<id>`'),
  last_seq: z.number().int().min(0).describe("the seq of the task's latest event"),
  usage: taskUsageSchema.nullable().optional(),
});
export type TaskJson = z.infer<typeof taskSchema>;

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
    ...(row.usage ? { usage: row.usage } : {}),
  };
}
