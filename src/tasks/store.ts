import type { Knex } from 'knex';
import type { Db } from '../db';
import { FIRST_EVENT } from './events';
import { TERMINAL, type TaskEvent, type TaskRow, type TaskStatus, type TextRow } from './task';

/** The columns of a TextRow. */
const TEXT_ROW: Array<keyof TextRow> = [
  'id',
  'status',
  'lease_owner',
  'lease_expires_at',
  'user_id',
  'last_seq',
  'text_length',
];

/** The columns of one new task, as `TaskService.create` builds them. */
export type NewTaskValues = Record<string, unknown> & { id: string; user_id: string; inserted_at: Date };

/** An event to store: its seq and stored payload are complete (the payload names task_id and seq). */
export type StoredEvent = Pick<TaskEvent, 'task_id' | 'seq' | 'event' | 'payload'>;

/** A connection or the transaction a caller is in. */
export type Conn = Knex | Knex.Transaction;

/** The event that goes with every new task: seq 1, FIRST_EVENT (as `TaskService.create` announces it). */
const FIRST_EVENT_SQL =
  `INSERT INTO task_events (task_id, seq, event, payload, inserted_at) ` +
  `SELECT id, 1, ?, jsonb_build_object('task_id', id, 'seq', 1) || ?::jsonb, inserted_at FROM t`;

/**
 * New tasks whose creations first take from their users' buckets, one statement (the creation
 * limit's TAKE_CTES, then this): `:rows` is the tasks as JSON, each with `take`, its place among its
 * user's creations that take (1, 2, ...), or null if it takes nothing. A task is inserted only if
 * it takes nothing or its user's bucket granted at least that many (a bucket grants a prefix of
 * what is asked). The answer: the inserted task rows, then one row per user whose bucket answered
 * (`grant_user`, `granted`, `bucket_tokens`; the task columns null).
 */
const INSERT_TAKING_SQL = `,
v AS (
  SELECT * FROM json_to_recordset(:rows::json) AS v(
    id uuid, user_id text, task_type text, model text, provider text, provider_model text, status text,
    progress int, input_data text, provider_input text, run_after timestamptz, last_seq int,
    inserted_at timestamptz, updated_at timestamptz, take int)
),
t AS (
  INSERT INTO "tasks" (id, user_id, task_type, model, provider, provider_model, status, progress, input_data,
    provider_input, run_after, last_seq, inserted_at, updated_at)
  SELECT v.id, v.user_id, v.task_type, v.model, v.provider, v.provider_model, v.status, v.progress,
    v.input_data::jsonb, v.provider_input::jsonb, v.run_after, v.last_seq, v.inserted_at, v.updated_at
  FROM v LEFT JOIN grants g ON g.user_id = v.user_id
  WHERE v.take IS NULL OR v.take <= g.granted
  RETURNING *
),
e AS (
  INSERT INTO task_events (task_id, seq, event, payload, inserted_at)
  SELECT id, 1, :event, jsonb_build_object('task_id', id, 'seq', 1) || :payload::jsonb, inserted_at FROM t
)
SELECT t.*, NULL::text AS grant_user, NULL::int AS granted, NULL::float8 AS bucket_tokens FROM t
UNION ALL
SELECT (NULL::tasks).*, g.user_id, g.granted, g.tokens FROM grants g`;

/** What a bucket answered in an insert that takes: how many of its user's creations it granted, and what it holds now. */
export interface Grant {
  granted: number;
  tokens: number;
}

/**
 * The claim, one statement (graphile-worker's shape, with Oban's limits): lease up to `limit`
 * runnable tasks, skipping rows another transaction holds, and lease them in the same statement.
 * Runnable: unfinished, due, and not leased (or the lease lapsed). A lease of ours that lapsed
 * under load is not work to start twice in this process, so the tasks this process runs are left out.
 *
 * The caps count what is in flight (unfinished with a live lease) over every process on the
 * database: `global` in all, `perUser` per user, `perModel` per model. Fair by user: each
 * runnable task gets its user's turn (what the user has in flight, plus its place among the
 * user's runnable tasks in submission order) and the lowest turns go first, so one user's
 * backlog never keeps another user's first task waiting past one claim.
 */
const CLAIM_SQL = `
WITH busy AS (
  SELECT user_id, model FROM tasks
  WHERE status IN ('queued', 'processing') AND lease_expires_at >= :now
),
user_busy AS (SELECT user_id, count(*) AS n FROM busy GROUP BY user_id),
model_busy AS (SELECT model, count(*) AS n FROM busy GROUP BY model),
runnable AS (
  SELECT t.id, t.model, t.run_after, t.pos,
    coalesce(ub.n, 0) + row_number() OVER (PARTITION BY t.user_id ORDER BY t.run_after, t.pos) AS user_turn
  FROM tasks t LEFT JOIN user_busy ub ON ub.user_id = t.user_id
  WHERE t.status IN ('queued', 'processing')
    AND t.run_after <= :now
    AND (t.lease_expires_at IS NULL OR t.lease_expires_at < :now)
    AND NOT (t.id::text = ANY(:running::text[]))
),
ranked AS (
  SELECT r.id, r.user_turn, r.run_after, r.pos,
    coalesce(mb.n, 0) + row_number() OVER (PARTITION BY r.model ORDER BY r.user_turn, r.run_after, r.pos) AS model_turn
  FROM runnable r LEFT JOIN model_busy mb ON mb.model = r.model
  WHERE r.user_turn <= :perUser
),
chosen AS (
  SELECT id FROM ranked WHERE model_turn <= :perModel
  ORDER BY user_turn, run_after, pos
  LIMIT greatest(0, least(:limit, :global - (SELECT count(*) FROM busy)))
),
picked AS (
  SELECT id FROM tasks WHERE id IN (SELECT id FROM chosen)
  FOR UPDATE SKIP LOCKED
)
UPDATE tasks SET lease_owner = :owner, lease_expires_at = :leaseUntil, attempts = tasks.attempts + 1
FROM picked WHERE tasks.id = picked.id
RETURNING tasks.*`;

/**
 * Retention's batch, locked: finished tasks that ended before the cutoff, oldest first. SKIP
 * LOCKED: processes sweeping at once take different tasks and never wait on each other (or on a
 * task another statement holds).
 */
const EXPIRED_SQL = `
SELECT id FROM tasks
WHERE status IN ('succeeded', 'failed', 'canceled') AND completed_at < :before
ORDER BY completed_at ASC
LIMIT :limit
FOR UPDATE SKIP LOCKED`;

/**
 * Claims take this transaction-scoped advisory lock first, so that two processes never count the
 * same in-flight tasks and both fill the same room ('pyre' in ASCII).
 */
const CLAIM_LOCK = 0x70797265;

/** How many tasks a claim may lease: this process's room, and the caps over all processes. */
export interface ClaimLimits {
  /** Tasks this process may still take. */
  limit: number;
  /** Tasks in flight over all processes, at most. */
  global: number;
  /** A user's tasks in flight over all processes, at most. */
  perUser: number;
  /** A model's tasks in flight over all processes, at most. */
  perModel: number;
}

/** The columns a change may set; JSON ones are encoded here. */
const JSON_COLUMNS = new Set(['output', 'provider_output', 'error', 'usage']);

/**
 * Every SQL statement on `tasks` and `task_events`, in one place: the task service, the runner
 * and the metrics read and write tasks only through here. Methods that take `trx` run inside the
 * caller's transaction (the service's `apply` locks a row and decides under the lock).
 */
export class TaskStore {
  constructor(readonly db: Db) {}

  /** Run `fn` in one transaction. */
  transaction<T>(fn: (trx: Knex.Transaction) => Promise<T>): Promise<T> {
    return this.db.transaction(fn);
  }

  /**
   * One statement: the tasks and their first events, atomic as any single statement is. The one
   * place a task's first event is written (a batch of creates, or one inside a caller's transaction).
   */
  async insert(values: NewTaskValues[], conn: Conn = this.db): Promise<TaskRow[]> {
    const insert = conn('tasks').insert(values).returning('*').toSQL();
    const result = (await conn.raw(`WITH t AS (${insert.sql}), e AS (${FIRST_EVENT_SQL}) SELECT * FROM t`, [
      ...insert.bindings,
      FIRST_EVENT.event,
      JSON.stringify(FIRST_EVENT.payload),
    ])) as { rows: TaskRow[] };
    return result.rows;
  }

  /**
   * Like `insert`, but the creations marked in `takes` (each task's place among its user's
   * creations that take, or null) first take from their users' buckets, in the same statement
   * (`take`: the creation limit's TAKE_CTES and parameters). A marked task whose bucket did not
   * grant it is not inserted. Returns the inserted rows and each answering bucket by user; a user
   * missing there had a bucket created by another process meanwhile: ask again.
   */
  async insertTaking(
    values: NewTaskValues[],
    takes: Array<number | null>,
    take: { ctes: string; params: Record<string, unknown> },
  ): Promise<{ rows: TaskRow[]; grants: Map<string, Grant> }> {
    const rows = JSON.stringify(values.map((v, i) => ({ ...v, take: takes[i] })));
    const result = (await this.db.raw(`WITH ${take.ctes}${INSERT_TAKING_SQL}`, {
      ...take.params,
      rows,
      event: FIRST_EVENT.event,
      payload: JSON.stringify(FIRST_EVENT.payload),
    })) as {
      rows: Array<TaskRow & { grant_user: string | null; granted: number | null; bucket_tokens: number | null }>;
    };
    const inserted: TaskRow[] = [];
    const grants = new Map<string, Grant>();
    // A task row keeps the three (null) grant columns: taskJson picks its fields by name.
    for (const row of result.rows) {
      if (row.grant_user === null) inserted.push(row);
      else grants.set(row.grant_user, { granted: row.granted!, tokens: Number(row.bucket_tokens) });
    }
    return { rows: inserted, grants };
  }

  /** A task by id (the id must be a UUID: callers check). */
  async find(id: string, conn: Conn = this.db): Promise<TaskRow | undefined> {
    return (await conn('tasks').where({ id }).first()) as TaskRow | undefined;
  }

  /** A task by id, locked until the end of `trx`. */
  async lock(trx: Knex.Transaction, id: string): Promise<TaskRow | undefined> {
    return (await trx('tasks').where({ id }).forUpdate().first()) as TaskRow | undefined;
  }

  /**
   * Tasks by id, locked until the end of `trx`, in id order: transactions that lock several
   * rows this way take them in the same order and cannot deadlock on each other.
   */
  async lockMany(trx: Knex.Transaction, ids: string[]): Promise<TextRow[]> {
    if (!ids.length) return [];
    return (await trx('tasks')
      .select(TEXT_ROW)
      .whereRaw('id = ANY(?::uuid[])', [ids])
      .orderBy('id')
      .forUpdate()) as TextRow[];
  }

  /**
   * Text deltas of several (locked) tasks, one statement: the text_delta events (their payloads
   * built by the database from arrays, not a row of parameters each; `counted`, as their length
   * is in the `text_length` written here: see migration 20261207300001) and each task's new
   * `last_seq` and `text_length` (and `updated_at`).
   */
  async appendTextDeltas(
    trx: Knex.Transaction,
    deltas: Array<{ task_id: string; seq: number; delta: string }>,
    tasks: Array<{ id: string; last_seq: number; text_length: number }>,
    at: Date,
  ): Promise<void> {
    if (!deltas.length) return;
    await trx.raw(
      `WITH e AS (
         INSERT INTO task_events (task_id, seq, event, payload, inserted_at, counted)
         SELECT d.task_id, d.seq, 'text_delta', jsonb_build_object('task_id', d.task_id, 'seq', d.seq, 'delta', d.delta), ?, true
         FROM unnest(?::uuid[], ?::int[], ?::text[]) AS d(task_id, seq, delta)
       )
       UPDATE tasks SET last_seq = v.last_seq, text_length = v.text_length, updated_at = ?
       FROM unnest(?::uuid[], ?::int[], ?::int[]) AS v(id, last_seq, text_length)
       WHERE tasks.id = v.id`,
      [
        at,
        deltas.map((d) => d.task_id),
        deltas.map((d) => d.seq),
        deltas.map((d) => d.delta),
        at,
        tasks.map((t) => t.id),
        tasks.map((t) => t.last_seq),
        tasks.map((t) => t.text_length),
      ],
    );
  }

  /** Set columns of a task (JSON columns encoded); returns the new row. */
  async update(trx: Knex.Transaction, id: string, patch: Record<string, unknown>): Promise<TaskRow> {
    const encoded = Object.fromEntries(
      Object.entries(patch).map(([k, v]) => [k, JSON_COLUMNS.has(k) && v !== null ? JSON.stringify(v) : v]),
    );
    const [row] = (await trx('tasks').where({ id }).update(encoded).returning('*')) as TaskRow[];
    return row!;
  }

  /** Store events of one (locked) task and move its `last_seq` to the last of them. */
  async appendEvents(trx: Knex.Transaction, row: TaskRow, events: StoredEvent[], at: Date): Promise<TaskRow> {
    await trx('task_events').insert(eventRows(events, at));
    return this.update(trx, row.id, { last_seq: row.last_seq + events.length });
  }

  /**
   * A page of a user's tasks, newest first: `limit` rows before position `before`, of one status
   * and whose prompt contains `search` (case-insensitive, taken literally), when given. Walks the
   * (user_id, pos) or (user_id, status, pos) index newest first and stops at `limit` matches.
   */
  async listByUser(q: {
    userId: string;
    status?: string;
    search?: string;
    before?: number;
    limit: number;
  }): Promise<TaskRow[]> {
    const query = this.db('tasks').where({ user_id: q.userId }).orderBy('pos', 'desc').limit(q.limit);
    if (q.status) query.andWhere({ status: q.status });
    if (q.before !== undefined) query.andWhere('pos', '<', q.before);
    if (q.search) query.andWhereRaw(`input_data->>'prompt' ILIKE ? ESCAPE '\\'`, [`%${likeLiteral(q.search)}%`]);
    return (await query) as TaskRow[];
  }

  /** Ids of unfinished tasks that have a prediction. */
  async unfinishedWithPrediction(provider?: string): Promise<string[]> {
    const rows = (await this.db('tasks')
      .whereNotNull('prediction_id')
      .modify((q) => (provider === undefined ? q : q.where({ provider })))
      .whereNotIn('status', [...TERMINAL])
      .select('id')) as Array<{ id: string }>;
    return rows.map((r) => r.id);
  }

  /** A task's stored events after `afterSeq`, in seq order (without user_id, which the task row has). */
  async eventsAfter(taskId: string, afterSeq: number): Promise<Array<Omit<TaskEvent, 'user_id'>>> {
    const rows = (await this.db('task_events')
      .where({ task_id: taskId })
      .andWhere('seq', '>', afterSeq)
      .orderBy('seq', 'asc')) as EventRow[];
    return rows.map(storedEvent);
  }

  /**
   * The stored events of several tasks, each after its own seq, in one statement: grouped by
   * task, in seq order (the event relay reads a batch of notifications with it).
   */
  async eventsAfterMany(
    after: Array<{ id: string; seq: number }>,
  ): Promise<Map<string, Array<Omit<TaskEvent, 'user_id'>>>> {
    const out = new Map<string, Array<Omit<TaskEvent, 'user_id'>>>();
    if (!after.length) return out;
    const result = (await this.db.raw(
      `SELECT e.task_id, e.seq, e.event, e.payload, e.inserted_at
       FROM task_events e
       JOIN unnest(?::uuid[], ?::int[]) AS w(task_id, after_seq) ON e.task_id = w.task_id AND e.seq > w.after_seq
       ORDER BY e.task_id, e.seq`,
      [after.map((a) => a.id), after.map((a) => a.seq)],
    )) as { rows: EventRow[] };
    for (const r of result.rows) {
      const list = out.get(r.task_id) ?? [];
      if (!list.length) out.set(r.task_id, list);
      list.push(storedEvent(r));
    }
    return out;
  }

  /**
   * The event relay's position check, one statement: the last seq of the tasks `taskIds`, and of
   * the tasks of `userIds` changed since `since`.
   */
  async positions(
    taskIds: string[],
    userIds: string[],
    since: Date,
  ): Promise<Array<{ id: string; user_id: string; last_seq: number }>> {
    if (!taskIds.length && !userIds.length) return [];
    return (await this.db('tasks')
      .select('id', 'user_id', 'last_seq')
      .where((w) => {
        if (taskIds.length) w.orWhereRaw('id = ANY(?::uuid[])', [taskIds]);
        if (userIds.length) w.orWhereRaw('(user_id = ANY(?::text[]) AND updated_at >= ?)', [userIds, since]);
      })) as Array<{ id: string; user_id: string; last_seq: number }>;
  }

  /** A user's events stored after `since`, ordered by (inserted_at, task_id, seq): the feed's replay. */
  async userEventsSince(userId: string, since: Date, limit: number): Promise<Array<Omit<TaskEvent, 'user_id'>>> {
    const rows = (await this.db('task_events as e')
      .join('tasks as t', 't.id', 'e.task_id')
      .where('t.user_id', userId)
      .andWhere('e.inserted_at', '>', since)
      .orderBy([
        { column: 'e.inserted_at', order: 'asc' },
        { column: 'e.task_id', order: 'asc' },
        { column: 'e.seq', order: 'asc' },
      ])
      .limit(limit)
      .select('e.task_id', 'e.seq', 'e.event', 'e.payload', 'e.inserted_at')) as EventRow[];
    return rows.map(storedEvent);
  }

  /** Text already announced in a task's text_delta events, joined. */
  async announcedText(taskId: string): Promise<string> {
    const events = (await this.db('task_events')
      .where({ task_id: taskId, event: 'text_delta' })
      .orderBy('seq')
      .select('payload')) as Array<{ payload: { delta?: string } }>;
    return events.map((e) => e.payload.delta ?? '').join('');
  }

  /**
   * Lease runnable tasks to `owner` until `leaseUntil`, counting a try each, within `limits`
   * (see CLAIM_SQL): one statement, after the claim lock, in one short transaction.
   */
  async claim(q: { owner: string; now: Date; leaseUntil: Date; running: string[] } & ClaimLimits): Promise<TaskRow[]> {
    return this.db.transaction(async (trx) => {
      await trx.raw('SELECT pg_advisory_xact_lock(?)', [CLAIM_LOCK]);
      const result = (await trx.raw(CLAIM_SQL, {
        now: q.now,
        leaseUntil: q.leaseUntil,
        owner: q.owner,
        running: q.running,
        limit: q.limit,
        global: q.global,
        perUser: q.perUser,
        perModel: q.perModel,
      })) as { rows: TaskRow[] };
      return result.rows;
    });
  }

  /** Extend `owner`'s leases on `ids` until `until`; returns the ids still leased to it. */
  async renewLeases(q: { ids: string[]; owner: string; until: Date }): Promise<string[]> {
    const rows = (await this.db('tasks')
      .whereIn('id', q.ids)
      .andWhere({ lease_owner: q.owner })
      .update({ lease_expires_at: q.until })
      .returning('id')) as Array<{ id: string }>;
    return rows.map((r) => r.id);
  }

  /** Of `ids`, the tasks asked to cancel or ended: what their runs must act on. */
  async needingAction(ids: string[]): Promise<string[]> {
    const rows = (await this.db('tasks')
      .whereRaw('id = ANY(?::uuid[])', [ids])
      .andWhere((q) => q.where({ cancel_requested: true }).orWhereIn('status', [...TERMINAL]))
      .select('id')) as Array<{ id: string }>;
    return rows.map((r) => r.id);
  }

  /** Predictions that tasks of a model other than `exceptId` own, created since `since`. */
  async predictionsOfOthers(q: { providerModel: string; exceptId: string; since: Date }): Promise<string[]> {
    const rows = (await this.db('tasks')
      .select('prediction_id')
      .where({ provider_model: q.providerModel })
      .whereNot({ id: q.exceptId })
      .whereNotNull('prediction_id')
      .andWhere('create_attempted_at', '>=', q.since)) as Array<{ prediction_id: string }>;
    return rows.map((r) => r.prediction_id);
  }

  /** Ids of unfinished tasks leased to `owner`. */
  async unfinishedLeasedTo(owner: string): Promise<string[]> {
    const rows = (await this.db('tasks')
      .where({ lease_owner: owner })
      .whereNotIn('status', [...TERMINAL])
      .select('id')) as Array<{ id: string }>;
    return rows.map((r) => r.id);
  }

  /** Which of `ids` are unfinished. */
  async unfinishedAmong(ids: string[]): Promise<string[]> {
    if (ids.length === 0) return [];
    const rows = (await this.db('tasks')
      .whereIn('id', ids)
      .whereNotIn('status', [...TERMINAL])
      .select('id')) as Array<{ id: string }>;
    return rows.map((r) => r.id);
  }

  /**
   * Retention: deletes up to `limit` finished tasks that ended before `before`, with their events
   * (ON DELETE CASCADE), in one transaction. `beforeDelete` runs on the locked batch first (it
   * deletes the output files): if it throws, nothing is deleted and a later sweep tries again.
   * Unfinished tasks are never taken, however old. Returns the ids deleted.
   */
  async deleteFinished(
    q: { before: Date; limit: number },
    beforeDelete: (ids: string[]) => Promise<void>,
  ): Promise<string[]> {
    return this.db.transaction(async (trx) => {
      const picked = (await trx.raw(EXPIRED_SQL, { before: q.before, limit: q.limit })) as {
        rows: Array<{ id: string }>;
      };
      const ids = picked.rows.map((r) => r.id);
      if (ids.length === 0) return [];
      await beforeDelete(ids);
      await trx('tasks')
        .whereIn('id', ids)
        .whereIn('status', [...TERMINAL])
        .delete();
      return ids;
    });
  }

  /** How many tasks are in each status, and the retries they took (tries beyond the first). */
  async countByStatus(): Promise<{ byStatus: Map<TaskStatus, number>; retries: number }> {
    const rows = (await this.db('tasks')
      .select('status')
      .count({ n: '*' })
      .sum({ retries: this.db.raw('case when attempts > 1 then attempts - 1 else 0 end') })
      .groupBy('status')) as unknown as Array<{
      status: TaskStatus;
      n: string | number;
      retries: string | number | null;
    }>;
    return {
      byStatus: new Map(rows.map((r) => [r.status, Number(r.n)])),
      retries: rows.reduce((s, r) => s + Number(r.retries ?? 0), 0),
    };
  }
}

/** A task_events row as knex reads it. */
interface EventRow {
  task_id: string;
  seq: number;
  event: string;
  payload: Record<string, unknown>;
  inserted_at: Date;
}

/** A stored event as the service hands it out. The log holds only events written through the contract (src/tasks/events.ts). */
function storedEvent(r: EventRow): Omit<TaskEvent, 'user_id'> {
  return {
    task_id: r.task_id,
    seq: r.seq,
    event: r.event,
    payload: r.payload,
    inserted_at: new Date(r.inserted_at).toISOString(),
  } as Omit<TaskEvent, 'user_id'>;
}

/** `s` for a LIKE pattern, matched as it is: its `%`, `_` and backslash are escaped with a backslash. */
function likeLiteral(s: string): string {
  return s.replace(/[\\%_]/g, (c) => `\\${c}`);
}

/** The `task_events` rows of `events`, stored at `at`. */
function eventRows(events: StoredEvent[], at: Date) {
  return events.map((e) => ({
    task_id: e.task_id,
    seq: e.seq,
    event: e.event,
    payload: JSON.stringify(e.payload),
    inserted_at: at,
  }));
}
