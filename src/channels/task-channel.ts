import type { Channel, ChannelSocket, HandleInResult, InfoBroadcast, JoinResult, Payload } from '../realtime';
import type { Logger } from '../log';
import { ConflictError, NotFoundError, ValidationError } from '../tasks/errors';
import { isTaskEventName, kindGenerated, TASK_EVENT_NAMES, type TaskType } from '../tasks/events';
import { isUuid, type TaskService } from '../tasks/service';
import { TERMINAL, type TaskEvent } from '../tasks/task';
import { withAbsoluteUrls } from '../storage/urls';

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

/** The events that carry output URLs. */
const RESPONSE_EVENTS = ['image_response', 'video_response', 'text_response'];

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
  ) {}

  async join(topic: string, payload: Payload, socket: ChannelSocket<TaskAssigns>): Promise<JoinResult> {
    const spelled = topic.slice('task:'.length);
    if (!isUuid(spelled)) return { status: 'error', response: { reason: 'invalid topic: task:<uuid> expected' } };
    // Task ids are lower-case (as Ecto.UUID and PostgreSQL write them); Swift's uuidString is upper-case.
    const taskId = spelled.toLowerCase();
    const p = (payload && typeof payload === 'object' && !Buffer.isBuffer(payload) ? payload : {}) as Record<
      string,
      unknown
    >;
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
    // The realtime layer subscribed before join ran and holds what is broadcast meanwhile for
    // handleOut, so nothing committed after our read is missed. One more read of the log once
    // joined (handleInfo runs after the reply) also covers an event whose broadcast never came.
    setImmediate(() => socket.send(CATCH_UP));
    return {
      status: 'ok',
      response: { task: row ? forClient(this.tasks.toJson(row), socket) : null, ...(notice ? { notice } : {}) },
    };
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
    if (!(await this.mayReceive(socket))) return;
    const seq = (payload as { seq?: number }).seq ?? 0;
    if (seq <= socket.assigns.lastSeq) return;
    if (seq > socket.assigns.lastSeq + 1) await this.catchUp(socket, seq - 1);
    if (seq !== socket.assigns.lastSeq + 1) return;
    socket.push(event, forClient(payload, socket));
    socket.assigns.lastSeq = seq;
  }

  /** Push stored events after lastSeq, up to `upTo`. */
  private async catchUp(socket: ChannelSocket<TaskAssigns>, upTo: number): Promise<void> {
    if (!(await this.mayReceive(socket))) return;
    const { taskId, userId, lastSeq } = socket.assigns;
    const events = await this.tasks.eventsOf({ id: taskId, user_id: userId }, lastSeq);
    for (const e of events) if (e.seq <= upTo) this.pushEvent(socket, e);
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

/** `tasks:<user_id>`: every event of a user's tasks, for dashboards. Only that user may join. */
export class UserTasksChannel implements Channel<UserAssigns> {
  // The final events carry output URLs, made absolute per socket (the rest pass untouched).
  readonly intercept = RESPONSE_EVENTS;

  join(topic: string, _payload: Payload, socket: ChannelSocket<UserAssigns>): JoinResult {
    const userId = topic.slice('tasks:'.length);
    if (userId !== socket.assigns.userId) return { status: 'error', response: { reason: 'unauthorized' } };
    return { status: 'ok', response: {} };
  }

  /**
   * The feed takes no client events. Any push gets an error reply, as a Phoenix channel's
   * catch-all `handle_in` gives; without this the push crashed the channel (phx_error) and
   * wrote an error line, as often as a client liked.
   */
  handleIn(): HandleInResult {
    return { reply: 'error', response: { reason: 'unknown event' } };
  }

  handleOut(event: string, payload: Payload, socket: ChannelSocket<UserAssigns>): void {
    socket.push(event, forClient(payload, socket));
  }
}
