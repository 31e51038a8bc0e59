import { randomUUID } from 'node:crypto';
import type { Knex } from 'knex';
import type { Logger } from '../log';
import type { TaskCreationLimit } from '../db/rate-limit';
import type { Db } from '../db';
import { ConflictError, isUniqueViolation, NotFoundError } from './errors';
import { CANCELED_BY_USER, FIRST_EVENT, type NewTaskEvent } from './events';
import { GroupInsert } from './group-insert';
import { parseTaskInput } from './input';
import { DEFAULT_PAGE, encodeCursor, type ListQuery } from './list-query';
import type { ModelRegistry, TaskType } from './models';
import {
  TERMINAL,
  responseEvent,
  taskJson,
  type TaskError,
  type TaskEvent,
  type TaskJson,
  type TaskOutput,
  type TaskRow,
  type TaskStatus,
} from './task';
import { TaskStore } from './store';
import { TextAppends, type TextAppend } from './text-appends';

/** Called after a commit with the events it stored, in seq order. */
export type TaskEventListener = (events: TaskEvent[]) => void;

/** A change to a task's columns, applied with the events that announce it. */
export interface TaskChange {
  status?: TaskStatus;
  progress?: number | null;
  output?: TaskOutput | null;
  provider_output?: unknown;
  error?: TaskError | null;
  /** The provider's own words about a failure (operators only: logged, and kept on the row). */
  provider_error?: string | null;
  attempts?: number;
  prediction_id?: string | null;
  create_attempted_at?: Date | null;
  run_after?: Date;
  lease_owner?: string | null;
  lease_expires_at?: Date | null;
  cancel_requested?: boolean;
}

/** What `apply` is to do to a task: a change and the extra events that announce it. */
export type TaskDecision = { change: TaskChange; events?: NewTaskEvent[] };

const UUID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/i;
export const isUuid = (s: string) => UUID.test(s);

/** Whether a status may follow another. Terminal states are final. */
function allowed(from: TaskStatus, to: TaskStatus): boolean {
  if (from === to) return true;
  if (TERMINAL.has(from)) return false;
  if (from === 'processing' && to === 'queued') return true;
  return to !== 'queued';
}

/**
 * The one task service: REST and channels both call it; the runner moves tasks
 * through it. Every state change and the events that announce it are written in
 * one transaction, then handed to listeners.
 */
export class TaskService {
  private readonly listeners = new Set<TaskEventListener>();
  private readonly now: () => Date;
  private readonly inserts: GroupInsert;
  /** The text deltas of every text stream of this process, written in shared transactions. */
  readonly texts: TextAppends;
  /** The SQL of tasks and their events (the runner shares it). */
  readonly store: TaskStore;

  constructor(
    db: Db,
    readonly registry: ModelRegistry,
    private readonly logger: Logger,
    opts: { now?: () => Date } = {},
  ) {
    this.now = opts.now ?? (() => new Date());
    this.store = new TaskStore(db);
    this.inserts = new GroupInsert(this.store);
    this.texts = new TextAppends(this.store, this.now, (events) => this.publish(events));
  }

  /** Subscribe to committed events. Returns the unsubscribe function. */
  onEvents(listener: TaskEventListener): () => void {
    this.listeners.add(listener);
    return () => this.listeners.delete(listener);
  }

  /**
   * Validate a request and store the task with its first event, `status: queued`.
   * A refused request stores nothing. `id` lets a channel client pick the task id.
   * `inTransaction` runs in the same transaction (idempotency keys use it). `limit`: the create
   * takes from the user's creation limit in its insert's statement (RateLimitedError if refused;
   * nothing is stored then); not with `inTransaction`.
   */
  async create(
    userId: string,
    rawInput: unknown,
    opts: {
      id?: string;
      impliedType?: TaskType;
      inTransaction?: (trx: Knex.Transaction, task: TaskJson) => Promise<void>;
      limit?: TaskCreationLimit;
    } = {},
  ): Promise<TaskJson> {
    const req = parseTaskInput(this.registry, rawInput, opts.impliedType);
    const id = (opts.id ?? randomUUID()).toLowerCase();
    const now = this.now();
    // The task and its first event (seq 1, status queued), written together.
    const first: TaskEvent = {
      task_id: id,
      user_id: userId,
      seq: 1,
      event: FIRST_EVENT.event,
      payload: { task_id: id, seq: 1, ...FIRST_EVENT.payload },
      inserted_at: now.toISOString(),
    };
    const values = {
      id,
      user_id: userId,
      task_type: req.taskType,
      model: req.model.name,
      provider: req.model.provider,
      provider_model: req.model.providerModel,
      status: 'queued',
      progress: null,
      input_data: JSON.stringify(req.inputData),
      provider_input: JSON.stringify(req.providerInput),
      run_after: now,
      last_seq: 1,
      inserted_at: now,
      updated_at: now,
    };
    let row: TaskRow;
    try {
      if (opts.inTransaction) {
        const hook = opts.inTransaction;
        row = await this.store.transaction(async (trx) => {
          const [inserted] = await this.store.insert([values], trx);
          await hook(trx, taskJson(inserted!));
          return inserted!;
        });
      } else {
        // Group commit: written with any creates that overlap it, in one statement.
        row = await this.inserts.insert(values, opts.limit);
      }
    } catch (err) {
      // A client-chosen id may be taken by a create that won a race (the only unique key then).
      if (opts.id && isUniqueViolation(err))
        throw new ConflictError(`duplicate task id ${id}: a task has it already`, { cause: err });
      throw err;
    }
    this.logger.info({ task_id: id, user_id: userId, model: req.model.name, task_type: req.taskType }, 'task created');
    this.publish([first]);
    return taskJson(row);
  }

  /** A user's task; another user's task is not found. */
  async get(userId: string, id: string): Promise<TaskJson> {
    const row = await this.find(id);
    if (!row || row.user_id !== userId) throw new NotFoundError();
    return taskJson(row);
  }

  /** The client's view of a stored task. */
  toJson(row: TaskRow): TaskJson {
    return taskJson(row);
  }

  /** A task by id, whoever owns it (for the runner and channel checks). */
  async find(id: string): Promise<TaskRow | undefined> {
    if (!isUuid(id)) return undefined;
    return this.store.find(id);
  }

  /** A page of the user's tasks, newest first, as parseListQuery validated it. */
  async list(
    userId: string,
    query: Partial<ListQuery> = {},
  ): Promise<{ data: TaskJson[]; next_cursor: string | null }> {
    const limit = query.limit ?? DEFAULT_PAGE;
    const rows = await this.store.listByUser({ userId, ...query, limit: limit + 1 });
    const more = rows.length > limit;
    const page = rows.slice(0, limit);
    return { data: page.map(taskJson), next_cursor: more ? encodeCursor(page[page.length - 1]!.pos) : null };
  }

  /**
   * Cancel a task. A queued task is canceled at once; a running one is marked
   * and the runner cancels its prediction. Canceling a finished task returns it as it is.
   */
  async cancel(userId: string, id: string): Promise<TaskJson> {
    const row = await this.find(id);
    if (!row || row.user_id !== userId) throw new NotFoundError();
    if (TERMINAL.has(row.status)) return taskJson(row);
    const changed = await this.apply(id, (cur) => {
      if (TERMINAL.has(cur.status)) return null;
      if (cur.status === 'queued' && !cur.prediction_id) {
        return { change: { status: 'canceled', error: CANCELED_BY_USER } };
      }
      return { change: { cancel_requested: true } };
    });
    return taskJson(changed ?? (await this.find(id))!);
  }

  /**
   * Forget the predictions of unfinished tasks and queue them again: for a provider that has
   * lost them all (demo mode's built-in stand-in starts empty with each run). Each task gets a
   * `status: queued` event and will be created anew; a try is not counted. Returns how many.
   */
  async requeueLostPredictions(provider?: string): Promise<number> {
    let requeued = 0;
    for (const id of await this.store.unfinishedWithPrediction(provider)) {
      const done = await this.apply(id, (cur) =>
        TERMINAL.has(cur.status) || cur.prediction_id === null
          ? null
          : {
              change: {
                status: 'queued',
                progress: null,
                prediction_id: null,
                create_attempted_at: null,
                run_after: this.now(),
                lease_owner: null,
                lease_expires_at: null,
              },
            },
      );
      if (done) requeued++;
    }
    if (requeued) this.logger.warn({ tasks: requeued }, 'tasks whose predictions the provider lost start over');
    return requeued;
  }

  /** The last seq of the tasks `taskIds`, and of the tasks of `userIds` changed since `since` (the event relay's position check). */
  positions(
    taskIds: string[],
    userIds: string[],
    since: Date,
  ): Promise<Array<{ id: string; user_id: string; last_seq: number }>> {
    return this.store.positions(taskIds, userIds, since);
  }

  /** A user's events stored after `since`, in store order (the `tasks:<user_id>` feed's replay). */
  async userEventsSince(userId: string, since: Date, limit: number): Promise<TaskEvent[]> {
    return (await this.store.userEventsSince(userId, since, limit)).map(
      (e) => ({ ...e, user_id: userId }) as TaskEvent,
    );
  }

  /** The task's event log after `afterSeq`, in seq order. */
  async events(userId: string, id: string, afterSeq = 0): Promise<TaskEvent[]> {
    const row = await this.find(id);
    if (!row || row.user_id !== userId) throw new NotFoundError();
    return this.eventsOf(row, afterSeq);
  }

  /** The stored events of a task after `afterSeq` (no ownership check). */
  async eventsOf(row: Pick<TaskRow, 'id' | 'user_id'>, afterSeq = 0): Promise<TaskEvent[]> {
    const events = await this.store.eventsAfter(row.id, afterSeq);
    return events.map((e) => ({ ...e, user_id: row.user_id }) as TaskEvent);
  }

  /**
   * The stored events of several tasks, each after its own seq (no ownership check), in one
   * query: by task id, in seq order.
   */
  async eventsOfMany(
    tasks: Array<{ id: string; user_id: string; afterSeq: number }>,
  ): Promise<Map<string, TaskEvent[]>> {
    const rows = await this.store.eventsAfterMany(tasks.map((t) => ({ id: t.id, seq: t.afterSeq })));
    const userOf = new Map(tasks.map((t) => [t.id, t.user_id]));
    const out = new Map<string, TaskEvent[]>();
    for (const [id, events] of rows)
      out.set(
        id,
        events.map((e) => ({ ...e, user_id: userOf.get(id)! }) as TaskEvent),
      );
    return out;
  }

  /**
   * Announce what `a` adds to a text task's text, as one text_delta (see TextAppends): false when
   * the write is refused (the task ended, or `a.may` says it is not the writer's).
   */
  appendText(a: TextAppend): Promise<boolean> {
    return this.texts.append(a);
  }

  /**
   * Change a task under a row lock. `decide` sees the current row and returns the
   * change and any extra events (or null to leave it). A `status` event is added
   * for a status change, and the final `*_response` event for a terminal one.
   * `decide` may read more through `trx` while the row is locked (the runner reads
   * the text announced so far). Returns the new row, or undefined when nothing changed.
   */
  async apply(
    id: string,
    decide: (cur: TaskRow, trx: Knex.Transaction) => TaskDecision | null | Promise<TaskDecision | null>,
  ): Promise<TaskRow | undefined> {
    const result = await this.store.transaction(async (trx) => {
      const cur = await this.store.lock(trx, id);
      if (!cur) return undefined;
      const decision = await decide(cur, trx);
      if (!decision) return undefined;
      const { change } = decision;
      const events = [...(decision.events ?? [])];
      const now = this.now();
      const patch: Record<string, unknown> = { updated_at: now };
      for (const [k, v] of Object.entries(change)) if (v !== undefined) patch[k] = v;
      const next = change.status;
      if (next && next !== cur.status) {
        if (!allowed(cur.status, next)) {
          this.logger.warn({ task_id: id, from: cur.status, to: next }, 'refused a status change');
          return undefined;
        }
        if (next === 'processing' && !cur.started_at) patch.started_at = now;
        if (TERMINAL.has(next)) {
          if (change.provider_error)
            this.logger.warn(
              { task_id: id, code: change.error?.code, provider_error: change.provider_error },
              'task failed at the provider',
            );
          patch.completed_at = now;
          patch.lease_owner = null;
          patch.lease_expires_at = null;
          if (next === 'succeeded') patch.progress = 100;
        }
        const progress =
          (patch.progress as number | null | undefined) ??
          (change.progress !== undefined ? change.progress : cur.progress);
        const error = change.error !== undefined ? change.error : cur.error;
        events.unshift({
          event: 'status',
          payload: { status: next, progress, error: next === 'succeeded' ? null : error },
        });
        if (TERMINAL.has(next)) {
          const output = change.output !== undefined ? change.output : cur.output;
          events.push({
            event: responseEvent(cur.task_type),
            payload: {
              status: next === 'succeeded' ? 'success' : 'failed',
              output: next === 'succeeded' ? output : null,
              error: next === 'succeeded' ? null : error,
            },
          });
        }
      }
      const updated = await this.store.update(trx, id, patch);
      const stored = await this.appendEvents(trx, updated, events);
      return stored;
    });
    if (!result) return undefined;
    if (result.events.length) this.publish(result.events);
    return result.row;
  }

  /** Store events with the next seqs of the (locked) task row. */
  private async appendEvents(
    trx: Knex.Transaction,
    row: TaskRow,
    events: NewTaskEvent[],
  ): Promise<{ row: TaskRow; events: TaskEvent[] }> {
    if (events.length === 0) return { row, events: [] };
    const now = this.now();
    const first = row.last_seq + 1;
    const stored = events.map(
      (e, i) =>
        ({
          task_id: row.id,
          user_id: row.user_id,
          seq: first + i,
          event: e.event,
          payload: { task_id: row.id, seq: first + i, ...e.payload },
          inserted_at: now.toISOString(),
        }) as TaskEvent,
    );
    return { row: await this.store.appendEvents(trx, row, stored, now), events: stored };
  }

  private publish(events: TaskEvent[]): void {
    for (const l of this.listeners) {
      try {
        l(events);
      } catch (err) {
        this.logger.error({ err, task_id: events[0]?.task_id }, 'task event listener failed');
      }
    }
  }
}
