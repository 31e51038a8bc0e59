/**
 * The task-event contract, defined once. What a task is (its kinds), what a channel pushes about
 * it (the events and their payloads) and the values those carry (status, error, output) are
 * declared here as zod schemas; the TypeScript types, the channel's intercept list, the OpenAPI
 * document, the dashboard (`/js/events.js`) and the CLI are all derived from them.
 *
 * To add an event: add its payload schema to TASK_EVENT_PAYLOADS, then emit it (through
 * `TaskService.apply`). Nothing else lists event names.
 */
import { z } from 'zod';

// ---- task kinds ---------------------------------------------------------------------------------

/**
 * The kinds of task. `kind` is the client's `type` (`input_data.type`, `GET /api/models`'s `type`);
 * `taskType` is what a task stores and shows as `task_type`; a client creates one on a channel
 * with `generateEvent` and its final result comes as `responseEvent`. `output` says what it
 * produces: `files` (copied to our storage, `output.urls`) or `text` (streamed as `text_delta`,
 * `output.text`); the runner, the OpenAPI document, the dashboard and the CLI read it here.
 */
export const TASK_KINDS = [
  {
    kind: 'image',
    taskType: 'image_gen',
    generateEvent: 'image_generate',
    responseEvent: 'image_response',
    output: 'files',
  },
  {
    kind: 'video',
    taskType: 'video_gen',
    generateEvent: 'video_generate',
    responseEvent: 'video_response',
    output: 'files',
  },
  {
    kind: 'text',
    taskType: 'text_gen',
    generateEvent: 'text_generate',
    responseEvent: 'text_response',
    output: 'text',
  },
] as const;

export type TaskKindRow = (typeof TASK_KINDS)[number];
export type TaskKind = TaskKindRow['kind'];
export type TaskType = TaskKindRow['taskType'];
export type TaskOutputKind = TaskKindRow['output'];
export type GenerateEvent = TaskKindRow['generateEvent'];
export type ResponseEvent = TaskKindRow['responseEvent'];

export const TASK_TYPES: readonly TaskType[] = TASK_KINDS.map((k) => k.taskType);

/** The kind of a task type (`image_gen` → image). */
export function kindOf(taskType: TaskType): TaskKindRow {
  return TASK_KINDS.find((k) => k.taskType === taskType)!;
}

/** Whether a task type produces text (streamed as text_delta) rather than files. */
export function outputsText(taskType: TaskType): boolean {
  return kindOf(taskType).output === 'text';
}

/** The kind a client's `type` names: its kind (`image`) or its task type (`image_gen`). */
export function kindNamed(type: string): TaskKindRow | undefined {
  return TASK_KINDS.find((k) => k.kind === type || k.taskType === type);
}

/** The kind a channel event creates (`image_generate` → image), if it is one. */
export function kindGenerated(event: string): TaskKindRow | undefined {
  return TASK_KINDS.find((k) => k.generateEvent === event);
}

/** The final result event's name for a task type (`image_gen` → `image_response`). */
export function responseEvent(taskType: TaskType): ResponseEvent {
  return kindOf(taskType).responseEvent;
}

// ---- the values events carry --------------------------------------------------------------------

export const TASK_STATUSES = ['queued', 'processing', 'succeeded', 'failed', 'canceled'] as const;
export const taskStatusSchema = z.enum(TASK_STATUSES);
export type TaskStatus = z.infer<typeof taskStatusSchema>;

/**
 * Why a task failed: the stable codes an app acts on, each with what it means and the message an
 * end user sees. The message never carries the provider's own words (they may name the operator's
 * billing page or the model's internals); those go to the logs and the task's `provider_error`
 * column, for operators.
 */
export const TASK_ERRORS = {
  canceled: { means: 'the user canceled the task', message: 'canceled by the user' },
  content_refused: {
    means: "the provider's safety filter refused the prompt or the result: change the prompt (or the images)",
    message: 'the request was refused by the content safety filter; change the prompt and try again',
  },
  invalid_input: {
    means: 'the provider refused the input (a parameter or image it cannot use): change the input',
    message: 'the model could not use this input; check the parameters and images',
  },
  provider_unavailable: {
    means:
      "the provider will not run tasks for this gateway (out of credit or capacity, credentials refused, model unavailable): an operator problem, not the user's; try again later",
    message: 'the generation service is unavailable right now (an operator problem); try again later',
  },
  timeout: {
    means: "no result within the model's deadline; the prediction was canceled",
    message: 'no result in time; the generation was canceled',
  },
  provider_failed: {
    means: 'the model failed while running (a crash, out of memory, an internal error): trying again may work',
    message: 'the model failed while generating; try again',
  },
  provider_canceled: {
    means: 'the provider canceled or aborted the prediction (not the user)',
    message: 'the generation was stopped by the provider; try again',
  },
  no_output: {
    means: 'the provider reported success without an output file',
    message: 'the generation finished without a result; try again',
  },
  retries_exhausted: {
    means: 'the provider could not be reached (or kept failing) on every try: try again later',
    message: 'the generation service could not be reached; try again later',
  },
  completion_interrupted: {
    means:
      'a streamed completion was cut off (the gateway restarted mid-stream) and cannot be resumed; it is not started again, so it is not billed twice: try again',
    message: 'the generation was interrupted and could not be resumed; try again',
  },
  unsupported_model: {
    means: 'the task names a model this gateway no longer has',
    message: 'this model is no longer available',
  },
} as const satisfies Record<string, { means: string; message: string }>;

export type TaskErrorCode = keyof typeof TASK_ERRORS;
export const TASK_ERROR_CODES = Object.keys(TASK_ERRORS) as [TaskErrorCode, ...TaskErrorCode[]];

export const taskErrorSchema = z.object({
  code: z
    .enum(TASK_ERROR_CODES)
    .describe(
      `machine-readable and stable: ${TASK_ERROR_CODES.map((c) => `\`${c}\` (${TASK_ERRORS[c].means})`).join('; ')}`,
    ),
  message: z.string().describe("for the end user; never the provider's own text"),
});
export type TaskError = z.infer<typeof taskErrorSchema>;

/** The error with `code`, and its end-user message unless another (ours, never the provider's) is given. */
export function taskError(code: TaskErrorCode, message?: string): TaskError {
  return { code, message: message ?? TASK_ERRORS[code].message };
}

/** What a finished task produced: file URLs (image, video) or text. */
export const taskOutputSchema = z.union([z.object({ urls: z.array(z.url()) }), z.object({ text: z.string() })]);
export type TaskOutput = z.infer<typeof taskOutputSchema>;

const percent = z.number().int().min(0).max(100);

/** The error a task canceled at its user's request ends with. */
export const CANCELED_BY_USER: TaskError = taskError('canceled');

// ---- the events ---------------------------------------------------------------------------------

/** What every pushed payload starts with: the task and the event's place in its log. */
export const eventEnvelopeSchema = z.object({
  task_id: z.guid(),
  seq: z.number().int().min(1).describe("the event's place in the task's log, gap-free from 1"),
});

/** A final result: `success` with the output, or `failed` with the error (a cancel is a failure). */
const responsePayload = z.object({
  status: z.enum(['success', 'failed']),
  output: taskOutputSchema.nullable(),
  error: taskErrorSchema.nullable(),
});

const responsePayloads = Object.fromEntries(TASK_KINDS.map((k) => [k.responseEvent, responsePayload])) as {
  [E in ResponseEvent]: typeof responsePayload;
};

/**
 * Every event the server pushes on `task:<id>` and `tasks:<user>`, with its payload (without the
 * envelope, which the store adds). The one list of event names.
 */
export const TASK_EVENT_PAYLOADS = {
  /** Every status change. */
  status: z.object({ status: taskStatusSchema, progress: percent.nullable(), error: taskErrorSchema.nullable() }),
  /** The provider reported progress (it only rises). */
  progress: z.object({ progress: percent, message: z.string().optional() }),
  /** Streamed text (text tasks): the characters after those already sent. */
  text_delta: z.object({ delta: z.string() }),
  ...responsePayloads,
};

type Payloads = typeof TASK_EVENT_PAYLOADS;
export type TaskEventName = keyof Payloads;
export const TASK_EVENT_NAMES = Object.keys(TASK_EVENT_PAYLOADS) as TaskEventName[];
export const RESPONSE_EVENTS: readonly ResponseEvent[] = TASK_KINDS.map((k) => k.responseEvent);

/** An event's payload as an emitter writes it. */
export type EventBody<E extends TaskEventName> = z.infer<Payloads[E]>;

/** An event to append to a task's log; the store adds `task_id` and `seq` to its payload. */
export type NewTaskEvent = { [E in TaskEventName]: { event: E; payload: EventBody<E> } }[TaskEventName];

/** One stored entry of a task's event log, as published and pushed. */
export type TaskEvent = {
  [E in TaskEventName]: {
    task_id: string;
    user_id: string;
    seq: number;
    event: E;
    payload: EventBody<E> & z.infer<typeof eventEnvelopeSchema>;
    inserted_at: string;
  };
}[TaskEventName];

/** Whether a pushed event's name is one of the task events. */
export const isTaskEventName = (name: string): name is TaskEventName => Object.hasOwn(TASK_EVENT_PAYLOADS, name);

/** Every task's first event, written with the task (seq 1). */
export const FIRST_EVENT = {
  event: 'status',
  payload: { status: 'queued', progress: null, error: null },
} as const satisfies NewTaskEvent;

/** The event log entry as `GET /api/tasks/{id}/events` serves it: one variant per event. */
export const taskEventSchema = z.discriminatedUnion(
  'event',
  TASK_EVENT_NAMES.map((name) =>
    z.object({
      task_id: z.guid(),
      seq: z.number().int().min(1),
      event: z.literal(name),
      payload: eventEnvelopeSchema.extend(TASK_EVENT_PAYLOADS[name].shape),
      inserted_at: z.iso.datetime(),
    }),
  ) as unknown as [z.ZodObject, ...z.ZodObject[]],
);

/** The names clients need, as the dashboard loads them (`/js/events.js`) and `/api/events.json` serves them. */
export function eventNames() {
  return {
    task_events: TASK_EVENT_NAMES,
    response_events: RESPONSE_EVENTS,
    generate_events: TASK_KINDS.map((k) => k.generateEvent),
    kinds: TASK_KINDS,
  };
}
