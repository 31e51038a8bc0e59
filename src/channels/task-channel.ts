import type { Channel, ChannelSocket, HandleInResult, InfoBroadcast, JoinResult, Payload } from '../realtime';
import type { Logger } from '../log';
import { ConflictError, NotFoundError, ValidationError } from '../tasks/errors';
import { isTaskEventName, kindGenerated, TASK_EVENT_NAMES, type TaskType } from '../tasks/events';
import { RateLimitedError, type TaskCreationLimit } from '../db/rate-limit';
import { isUuid, type TaskService } from '../tasks/service';
import { TERMINAL, type TaskEvent } from '../tasks/task';
import { isDatabaseUnavailable } from '../db/errors';
import { withAbsoluteUrls } from '../storage/urls';

/** Who wants a task's events in this process (the event relay's position check reads their positions). */
export interface EventWatch {
  watchTask(taskId: string, userId: string, seq: number): () => void;
  /** From now on: what came before is the join's replay's (`since`). */
  watchUser(userId: string): () => void;
}

/** The error reply of a join or push that needed the database while it could not be reached. */
const UNAVAILABLE = Object.freeze({ reason: 'unavailable: the database cannot be reached; retry' });
/** A channel whose catch-up read failed tries again after this long, while it lives. */
const CATCH_UP_RETRY_MS = 1000;

/** What a socket's connect stored: who it is. */
export interface UserAssigns extends Record<string, unknown> {
  userId: string;
  /** The base URL the client reached pyre at: stored `/files/…` output URLs are made absolute against it. */
  baseUrl?: string;
}

/** A task or event payload with its output URLs absolute for this socket's client. */
function forClient<T, A extends UserAssigns>(value: T, socket: ChannelSocket<A>): T {
  const base = socket.assigns.baseUrl;
  return base === undefined ? value : withAbsoluteUrls(value, base);
}

/** A join payload's fields (none when it is not a JSON object). */
function objectPayload(payload: Payload): Record<string, unknown> {
  return (
    payload && typeof payload === 'object' && !Buffer.isBuffer(payload) && !Array.isArray(payload) ? payload : {}
  ) as Record<string, unknown>;
}

/** Per-join state of a task channel. */
interface TaskAssigns extends UserAssigns {
  taskId: string;
  /** The highest seq this client has been sent (or had in its join reply). */
  lastSeq: number;
  /**
   * Whether the topic's task is this user's: true once seen so, false if another user's.
   * Unset while no task has the topic's id (a client may join a fresh id before creating it).
   */
  owned?: boolean;
}

const CATCH_UP = Symbol('catch-up');

/**
 * `task:<id>`: one task's events and nothing else. The join reply carries the
 * task as it is now; `last_seq` replays what the client missed. Every live event
 * goes through handleOut, which drops what the client already has and fills any
 * gap from the event log, so a client sees each seq once, in order.
 */
export class TaskChannel implements Channel<TaskAssigns> {
  /** Every task event goes through handleOut (the contract's list, src/tasks/events.ts). */
  readonly intercept = TASK_EVENT_NAMES;

  constructor(
    private readonly tasks: TaskService,
    private readonly logger: Logger,
    private readonly watch?: EventWatch,
    /** The per-user task-creation limit, shared with REST. */
    private readonly limit?: TaskCreationLimit,
  ) {}

  async join(topic: string, payload: Payload, socket: ChannelSocket<TaskAssigns>): Promise<JoinResult> {
    try {
      return await this.joinTask(topic, payload, socket);
    } catch (err) {
      if (!isDatabaseUnavailable(err)) throw err;
      this.logger.warn({ topic, err: (err as Error).message }, 'join refused: database unavailable');
      return { status: 'error', response: UNAVAILABLE };
    }
  }

  private async joinTask(topic: string, payload: Payload, socket: ChannelSocket<TaskAssigns>): Promise<JoinResult> {
    const spelled = topic.slice('task:'.length);
    if (!isUuid(spelled)) return { status: 'error', response: { reason: 'invalid topic: task:<uuid> expected' } };
    // Task ids are lower-case (as Ecto.UUID and PostgreSQL write them); Swift's uuidString is upper-case.
    const taskId = spelled.toLowerCase();
    const p = objectPayload(payload);
    let lastSeq: number | undefined;
    if (p.last_seq !== undefined && p.last_seq !== null) {
      if (typeof p.last_seq !== 'number' || !Number.isInteger(p.last_seq) || p.last_seq < 0) {
        return { status: 'error', response: { reason: 'invalid last_seq: a non-negative integer expected' } };
      }
      lastSeq = p.last_seq;
    }
    const row = await this.tasks.find(taskId);
    let notice: string | undefined;
    if (row && row.user_id !== socket.assigns.userId) return { status: 'error', response: { reason: 'unauthorized' } };
    socket.assigns.taskId = taskId;
    if (row) socket.assigns.owned = true;
    // Events are broadcast on task:<lower-case id>; a topic spelled otherwise listens there too.
    if (spelled !== taskId) socket.subscribe(`task:${taskId}`);
    if (!row) {
      // A client may pick a fresh id and create the task with *_generate on this topic.
      socket.assigns.lastSeq = 0;
    } else if (lastSeq === undefined) {
      socket.assigns.lastSeq = row.last_seq;
    } else if (lastSeq > row.last_seq) {
      // Ahead of the task (a seq kept from another task, or made up): taken as "up to date",
      // and said so in the reply, rather than silently skipping the events up to that seq.
      socket.assigns.lastSeq = row.last_seq;
      notice = `last_seq ${lastSeq} is beyond the task's last event (${row.last_seq}); events after ${row.last_seq} will be sent`;
    } else {
      socket.assigns.lastSeq = lastSeq;
      for (const e of await this.tasks.eventsOf(row, lastSeq)) this.pushEvent(socket, e);
    }
    if (this.watch) socket.onTerminate(this.watch.watchTask(taskId, socket.assigns.userId, socket.assigns.lastSeq));
    // The realtime layer subscribed before join ran and holds what is broadcast meanwhile for
    // handleOut, so nothing committed after our read is missed. One more read of the log once
    // joined (handleInfo runs after the reply) also covers an event whose broadcast never came.
    setImmediate(() => socket.send(CATCH_UP));
    return {
      status: 'ok',
      response: { task: row ? forClient(this.tasks.toJson(row), socket) : null, ...(notice ? { notice } : {}) },
    };
  }

  /** Joined again on another process (a long-poll session handed over): from the last seq sent here. */
  rejoinPayload(payload: Payload, socket: ChannelSocket<TaskAssigns>): Payload {
    return { ...objectPayload(payload), last_seq: socket.assigns.lastSeq };
  }

  async handleInfo(msg: unknown, socket: ChannelSocket<TaskAssigns>): Promise<void> {
    if (msg === CATCH_UP) {
      await this.catchUp(socket, Number.MAX_SAFE_INTEGER);
      return;
    }
    const b = msg as InfoBroadcast;
    if (b && b.topic === `task:${socket.assigns.taskId}` && isTaskEventName(b.event)) {
      await this.handleOut(b.event, b.payload, socket);
    }
  }

  /**
   * Whether this socket may be sent the task's events. A socket that joined a fresh id before any
   * task had it learns the owner when the first event comes; if another user created the task,
   * the channel is closed and nothing of it is sent.
   */
  private async mayReceive(socket: ChannelSocket<TaskAssigns>): Promise<boolean> {
    const a = socket.assigns;
    if (a.owned !== undefined) return a.owned;
    const row = await this.tasks.find(a.taskId);
    if (!row) return false;
    a.owned = row.user_id === a.userId;
    if (!a.owned) {
      this.logger.warn(
        { task_id: a.taskId, user_id: a.userId },
        "another user's task took this topic's id; channel closed",
      );
      socket.stop('unauthorized');
    }
    return a.owned;
  }

  async handleOut(event: string, payload: Payload, socket: ChannelSocket<TaskAssigns>): Promise<void> {
    try {
      if (!(await this.mayReceive(socket))) return;
    } catch (err) {
      this.deferCatchUp(socket, err);
      return;
    }
    const seq = (payload as { seq?: number }).seq ?? 0;
    if (seq <= socket.assigns.lastSeq) return;
    if (seq > socket.assigns.lastSeq + 1) await this.catchUp(socket, seq - 1);
    if (seq !== socket.assigns.lastSeq + 1) return;
    socket.push(event, forClient(payload, socket));
    socket.assigns.lastSeq = seq;
  }

  /**
   * Push stored events after lastSeq, up to `upTo`. While the database cannot be reached the
   * channel stays joined and tries again shortly (a crash would make the client rejoin with its
   * first join's `last_seq` and be sent events twice).
   */
  private async catchUp(socket: ChannelSocket<TaskAssigns>, upTo: number): Promise<void> {
    try {
      if (!(await this.mayReceive(socket))) return;
      const { taskId, userId, lastSeq } = socket.assigns;
      const events = await this.tasks.eventsOf({ id: taskId, user_id: userId }, lastSeq);
      for (const e of events) if (e.seq <= upTo) this.pushEvent(socket, e);
    } catch (err) {
      this.deferCatchUp(socket, err);
    }
  }

  private deferCatchUp(socket: ChannelSocket<TaskAssigns>, err: unknown): void {
    if (!isDatabaseUnavailable(err)) throw err;
    this.logger.warn(
      { task_id: socket.assigns.taskId, err: (err as Error).message },
      'catch-up deferred: database unavailable',
    );
    setTimeout(() => {
      if (socket.alive) socket.send(CATCH_UP);
    }, CATCH_UP_RETRY_MS).unref();
  }

  private pushEvent(socket: ChannelSocket<TaskAssigns>, e: TaskEvent): void {
    if (e.seq !== socket.assigns.lastSeq + 1) return;
    socket.push(e.event, forClient(e.payload, socket));
    socket.assigns.lastSeq = e.seq;
  }

  async handleIn(event: string, payload: Payload, socket: ChannelSocket<TaskAssigns>): Promise<HandleInResult> {
    const { taskId, userId } = socket.assigns;
    const log = this.logger.child({ task_id: taskId, event });
    try {
      const kind = kindGenerated(event);
      if (kind) return await this.generate(kind.taskType, payload, socket, log);
      if (event === 'cancel') {
        const task = await this.tasks.cancel(userId, taskId);
        return { reply: 'ok', response: { task_id: task.id, task: forClient(task, socket) } };
      }
      return { reply: 'error', response: { reason: `unknown event ${JSON.stringify(event).slice(0, 80)}` } };
    } catch (err) {
      if (err instanceof ValidationError)
        return { reply: 'error', response: { reason: 'invalid input', errors: err.fields } };
      if (err instanceof NotFoundError) return { reply: 'error', response: { reason: 'not found' } };
      if (err instanceof RateLimitedError)
        return { reply: 'error', response: { reason: err.message, retry_after: err.retryAfterSeconds } };
      if (isDatabaseUnavailable(err)) {
        log.warn({ err: (err as Error).message }, 'push refused: database unavailable');
        return { reply: 'error', response: UNAVAILABLE };
      }
      throw err;
    }
  }

  /**
   * `*_generate` on this topic. The topic's task exists (made over REST): reply
   * with it, never a second task. It does not: create it with the topic's id.
   */
  private async generate(
    type: TaskType,
    payload: Payload,
    socket: ChannelSocket<TaskAssigns>,
    log: Logger,
  ): Promise<HandleInResult> {
    const { taskId, userId } = socket.assigns;
    const existing = await this.tasks.find(taskId);
    if (!existing) {
      await this.limit?.take(userId);
      try {
        const task = await this.tasks.create(userId, payload, { id: taskId, impliedType: type });
        socket.assigns.owned = true;
        return { reply: 'ok', response: { task_id: task.id, task: forClient(task, socket) } };
      } catch (err) {
        if (!(err instanceof ConflictError)) throw err;
        log.info('task created concurrently; answering with it');
      }
    }
    const row = existing ?? (await this.tasks.find(taskId))!;
    if (row.user_id !== userId) return { reply: 'error', response: { reason: 'unauthorized' } };
    // The contract: a legacy *_generate on an existing task's topic gets that task back, never a
    // second one, whatever its type (e.g. a REST create without `type`, which is text).
    if (row.task_type !== type)
      log.warn(
        { task_type: row.task_type, pushed: type },
        'generate of another type on an existing task: answered with it',
      );
    else log.info({ terminal: TERMINAL.has(row.status) }, 'generate on an existing task: answered with it');
    return { reply: 'ok', response: { task_id: row.id, task: forClient(this.tasks.toJson(row), socket) } };
  }
}

/** Per-join state of a user's feed. */
interface FeedAssigns extends UserAssigns {
  /** The last seq pushed of each task whose events were replayed here (dropped once it ends). */
  seen: Map<string, number>;
  /** The replay's start, while the after-join catch-up is to run. */
  replayFrom?: FeedCursor;
  /** The cursor of the last event pushed. */
  lastCursor?: string;
}

/** A position in a user's feed: the stored time of an event, then its task and seq. */
interface FeedCursor {
  at: number;
  taskId: string;
  seq: number;
}

/** Feed events carry `cursor`; a client that rejoins with `{"since": cursor}` is sent what followed it. */
export function feedCursor(e: Pick<TaskEvent, 'inserted_at' | 'task_id' | 'seq'>): string {
  return `${new Date(e.inserted_at).getTime()}:${e.task_id}:${e.seq}`;
}

const CURSOR = /^(\d{1,15}):([0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}):(\d{1,9})$/;
function parseFeedCursor(s: string): FeedCursor | undefined {
  const m = CURSOR.exec(s);
  return m ? { at: Number(m[1]), taskId: m[2]!, seq: Number(m[3]) } : undefined;
}
const after = (e: TaskEvent, c: FeedCursor): boolean => {
  const at = new Date(e.inserted_at).getTime();
  return at !== c.at ? at > c.at : e.task_id !== c.taskId ? e.task_id > c.taskId : e.seq > c.seq;
};

/** The most events a `since` join replays; the reply says `replay_truncated` beyond it (reload over REST). */
export const FEED_REPLAY_LIMIT = 5000;

/**
 * `tasks:<user_id>`: every event of a user's tasks, for dashboards. Only that user may join.
 * Join with `{"since": cursor}` (the `cursor` of the last event received) to be sent the events
 * stored after it, before live ones, each once.
 */
export class UserTasksChannel implements Channel<FeedAssigns> {
  readonly intercept = TASK_EVENT_NAMES;

  constructor(
    private readonly tasks?: TaskService,
    private readonly logger?: Logger,
    private readonly watch?: EventWatch,
  ) {}

  async join(topic: string, payload: Payload, socket: ChannelSocket<FeedAssigns>): Promise<JoinResult> {
    const userId = topic.slice('tasks:'.length);
    if (userId !== socket.assigns.userId) return { status: 'error', response: { reason: 'unauthorized' } };
    const p = objectPayload(payload);
    socket.assigns.seen = new Map();
    let since: FeedCursor | undefined;
    if (p.since !== undefined && p.since !== null) {
      since = typeof p.since === 'string' ? parseFeedCursor(p.since) : undefined;
      if (!since)
        return { status: 'error', response: { reason: 'invalid since: the cursor of a feed event expected' } };
    }
    const release = this.watch?.watchUser(userId) ?? (() => {});
    socket.onTerminate(release);
    if (!since || !this.tasks) return { status: 'ok', response: {} };
    let truncated: boolean;
    try {
      truncated = await this.replay(socket, since);
    } catch (err) {
      release();
      if (!isDatabaseUnavailable(err)) throw err;
      this.logger?.warn({ topic, err: (err as Error).message }, 'join refused: database unavailable');
      return { status: 'error', response: UNAVAILABLE };
    }
    // The realtime layer subscribed before join ran, so what is broadcast after the read reaches
    // handleOut (which drops what the replay sent). One more read once joined (handleInfo runs after
    // the reply) covers an event whose broadcast never came.
    socket.assigns.replayFrom = since;
    setImmediate(() => socket.send(CATCH_UP));
    return { status: 'ok', response: truncated ? { replay_truncated: true } : {} };
  }

  /**
   * The feed takes no client events. Any push gets an error reply, as a Phoenix channel's
   * catch-all `handle_in` gives; without this the push crashed the channel (phx_error) and
   * wrote an error line, as often as a client liked.
   */
  handleIn(): HandleInResult {
    return { reply: 'error', response: { reason: 'unknown event' } };
  }

  /** Push the stored events after `since` this join has not pushed yet. Returns whether some were left out. */
  private async replay(socket: ChannelSocket<FeedAssigns>, since: FeedCursor): Promise<boolean> {
    const at = new Date(since.at - 1); // the read is by time; the cursor's own millisecond is sorted below
    const events = (await this.tasks!.userEventsSince(socket.assigns.userId, at, FEED_REPLAY_LIMIT + 1)).filter((e) =>
      after(e, since),
    );
    for (const e of events.slice(0, FEED_REPLAY_LIMIT)) {
      const last = socket.assigns.seen.get(e.task_id);
      if (last !== undefined && e.seq <= last) continue;
      const cursor = feedCursor(e);
      socket.push(e.event, forClient({ ...e.payload, cursor }, socket));
      socket.assigns.seen.set(e.task_id, e.seq);
      socket.assigns.lastCursor = cursor;
    }
    return events.length > FEED_REPLAY_LIMIT;
  }

  async handleInfo(msg: unknown, socket: ChannelSocket<FeedAssigns>): Promise<void> {
    const since = socket.assigns.replayFrom;
    if (msg !== CATCH_UP || !since) return;
    try {
      await this.replay(socket, since);
      socket.assigns.replayFrom = undefined;
    } catch (err) {
      if (!isDatabaseUnavailable(err)) throw err;
      setTimeout(() => {
        if (socket.alive) socket.send(CATCH_UP);
      }, CATCH_UP_RETRY_MS).unref();
    }
  }

  handleOut(event: string, payload: Payload, socket: ChannelSocket<FeedAssigns>): void {
    const { task_id: taskId, seq } = payload as { task_id?: string; seq?: number };
    const seen = socket.assigns.seen;
    if (typeof taskId === 'string' && typeof seq === 'number' && seen.size) {
      const last = seen.get(taskId);
      if (last !== undefined) {
        if (seq <= last) return; // sent by the replay already
        if (event.endsWith('_response')) seen.delete(taskId);
        else seen.set(taskId, seq);
      }
    }
    socket.push(event, forClient(payload, socket));
    const cursor = (payload as { cursor?: unknown }).cursor;
    if (typeof cursor === 'string') socket.assigns.lastCursor = cursor;
  }

  /**
   * Joined again on another process (a long-poll session handed over): from the last event sent
   * here. A feed that was sent nothing yet joins as its client did.
   */
  rejoinPayload(payload: Payload, socket: ChannelSocket<FeedAssigns>): Payload {
    const since = socket.assigns.lastCursor;
    return since === undefined ? payload : { ...objectPayload(payload), since };
  }
}
