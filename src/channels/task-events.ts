import type { Logger } from '../log';
import type { EventRef } from '../db/bus';
import type { Bus } from '../bus/bus';
import type { TaskService } from '../tasks/service';
import type { TaskEvent } from '../tasks/task';

/** Delivers a task's committed events to this process's subscribers. */
export type EventSink = (event: TaskEvent) => void;

/** How often the position check runs besides each (re)connect of the bus. */
export const POSITION_CHECK_INTERVAL_MS = 5000;
/**
 * Clock slack allowed between processes (tasks.updated_at is written with each process's clock):
 * the check for a user feed looks this far before its last successful check.
 */
const CLOCK_SLACK_MS = 30_000;

/** What this process has delivered of a task its subscribers watch. */
interface Tracked {
  userId: string;
  /** The highest seq delivered here; every seq up to it was delivered once, in order. */
  seq: number;
  /** Task channels joined to it here. */
  watchers: number;
  /** When its final event was delivered (entries of finished tasks are dropped after a while). */
  doneAt?: number;
  /** A fill from the event log in progress, and the seq it must reach. */
  filling?: Promise<void>;
  wantUpTo: number;
  /**
   * Found by the check of a user feed without having been seen here: events stored before the
   * feed was joined are not the feed's to deliver.
   */
  notBefore?: Date;
}

/**
 * Makes every committed task event reach every gateway process, once and in seq order. Events
 * committed here are delivered here at once; other processes are told on the cluster bus (a ref
 * that names the task and seq range), and read the events from the database (the source of truth).
 *
 * Refs sent while a process does not hear the bus are never delivered again, so for the tasks that
 * have subscribers here (task channels, and the tasks of users with a `tasks:<user_id>` feed) the
 * relay keeps the last seq it delivered and runs a position check (Centrifugo's idea): one query
 * reads those tasks' last seq, and whatever is behind is filled from the event log. It runs each
 * time the bus (re)connects and every POSITION_CHECK_INTERVAL_MS; a failed check (the database is
 * still away) is simply run again at the next tick. Without a bus (one process) there is no check.
 */
export class TaskEventRelay {
  private chain: Promise<void> = Promise.resolve();
  private readonly tracked = new Map<string, Tracked>();
  /**
   * Users with a feed joined here: how many joins, since when the feed is theirs, and the start
   * of the last position check that covered them.
   */
  private readonly users = new Map<string, { watchers: number; since: Date; checkedAt?: number }>();
  private timer: NodeJS.Timeout | undefined;
  private checking: Promise<void> | undefined;
  private checkAgain = false;
  /** The start of the last position check that succeeded. */
  private lastCheckAt = Date.now();
  /** Checks run and events they recovered (for tests and the log). */
  readonly stats = {
    checks: 0,
    failedChecks: 0,
    recovered: 0,
    /** Notification batches that named a task watched here, queries of the event log, and the events they read. */
    batches: 0,
    reads: 0,
    eventsRead: 0,
  };

  constructor(
    private readonly tasks: TaskService,
    private readonly sink: EventSink,
    private readonly logger: Logger,
    /** The cluster bus (its `events` topic); none with one process. */
    private readonly bus?: Bus,
    private readonly checkIntervalMs = POSITION_CHECK_INTERVAL_MS,
  ) {}

  /** Refs heard from other processes, not yet read. */
  private heard: EventRef[] = [];

  /** Registers on the bus (which the gateway starts afterwards; its first connection runs a check). */
  async start(): Promise<void> {
    this.tasks.onEvents((events) => {
      this.deliver(events);
      if (this.bus && events.length) {
        const first = events[0]!;
        const ref: EventRef = [first.task_id, first.user_id, first.seq, events[events.length - 1]!.seq];
        this.bus.publish('events', ref);
      }
    });
    if (!this.bus) return;
    this.bus.subscribe('events', (ref) => this.hear(ref as EventRef));
    this.bus.onReconnect(() => void this.check());
    this.timer = setInterval(() => void this.check(), this.checkIntervalMs);
    this.timer.unref();
  }

  /** A ref from another process: read with the others heard meanwhile, one batch at a time, so a task's events go out in seq order. */
  private hear(ref: EventRef): void {
    if (!Array.isArray(ref)) return;
    this.heard.push(ref);
    if (this.heard.length > 1) return;
    this.chain = this.chain
      .then(() => {
        const refs = this.heard;
        this.heard = [];
        return this.deliverRemote(refs);
      })
      .catch((err) =>
        this.logger.warn(
          { err: (err as Error).message },
          'reading events announced by another process failed; the position check will retry',
        ),
      );
  }

  /**
   * A task channel here subscribes to `taskId`, which it knows up to `seq`. Returns the release.
   * Only tracked with a bus (one process has nothing to miss).
   */
  watchTask(taskId: string, userId: string, seq: number): () => void {
    if (!this.bus) return () => {};
    const t = this.tracked.get(taskId);
    const feed = this.users.get(userId);
    if (t) t.watchers++;
    else if (feed) {
      // The user's feed is here: it has been sent nothing of this task yet (what this process
      // delivers of a watched user's task is tracked), so the feed's baseline is the log's start.
      this.tracked.set(taskId, { userId, seq: 0, watchers: 1, wantUpTo: 0, notBefore: feed.since });
    } else this.tracked.set(taskId, { userId, seq, watchers: 1, wantUpTo: seq });
    let released = false;
    return () => {
      if (released) return;
      released = true;
      const cur = this.tracked.get(taskId);
      if (cur) cur.watchers--;
    };
  }

  /**
   * A `tasks:<userId>` feed here delivers that user's events from now on (what came before is
   * the join's own replay, `since`). Returns the release.
   */
  watchUser(userId: string): () => void {
    if (!this.bus) return () => {};
    const u = this.users.get(userId);
    if (u) u.watchers++;
    else this.users.set(userId, { watchers: 1, since: new Date() });
    let released = false;
    return () => {
      if (released) return;
      released = true;
      const cur = this.users.get(userId);
      if (cur && --cur.watchers === 0) this.users.delete(userId);
    };
  }

  /** Committed events of one task, in seq order: deliver each seq once, filling any gap first. */
  private deliver(events: TaskEvent[]): void {
    const first = events[0];
    if (!first) return;
    const t = this.tracked.get(first.task_id);
    if (!t) {
      if (!this.bus || !this.users.has(first.user_id)) {
        for (const e of events) this.sink(e);
        return;
      }
      // The first event seen of a task of a watched user: from its start, or the rest comes from the log.
      this.tracked.set(first.task_id, { userId: first.user_id, seq: 0, watchers: 0, wantUpTo: 0 });
      if (first.seq !== 1) {
        const u = this.users.get(first.user_id)!;
        this.tracked.get(first.task_id)!.notBefore = u.since;
      }
      return this.deliver(events);
    }
    for (const e of events) {
      if (t.filling || e.seq > t.seq + 1) {
        this.fill(first.task_id, t, e.seq);
        return;
      }
      if (e.seq <= t.seq) continue; // delivered already (a NOTIFY and a check may both name it)
      this.sink(e);
      t.seq = e.seq;
      if (e.event.endsWith('_response')) t.doneAt = Date.now();
    }
  }

  /** Read the stored events after `t.seq` up to at least `upTo` and deliver them, one fill at a time per task. */
  private fill(taskId: string, t: Tracked, upTo: number): Promise<void> {
    t.wantUpTo = Math.max(t.wantUpTo, upTo);
    if (t.filling) return t.filling;
    const run = async () => {
      try {
        while (t.seq < t.wantUpTo) {
          this.stats.reads++;
          const events = await this.tasks.eventsOf({ id: taskId, user_id: t.userId }, t.seq);
          this.stats.eventsRead += events.length;
          if (!events.length) break;
          this.deliverRead(t, events);
          if (events[events.length - 1]!.seq !== t.seq) break; // a hole in the log: cannot be
        }
      } finally {
        t.filling = undefined;
        t.notBefore = undefined;
      }
    };
    t.filling = run().catch((err) => {
      this.logger.warn(
        { err: (err as Error).message, task_id: taskId },
        'catching up a task from the event log failed; the position check will retry',
      );
    });
    return t.filling;
  }

  /**
   * A batch of notifications from other processes: the tasks someone here watches (a task
   * channel, or its user's feed) are read in one query; the others are not read at all.
   */
  private async deliverRemote(refs: EventRef[]): Promise<void> {
    const wanted: Array<{ taskId: string; t: Tracked; upTo: number }> = [];
    for (const [taskId, userId, from, to] of refs) {
      let t = this.tracked.get(taskId);
      if (!t) {
        if (!this.bus || !this.users.has(userId)) continue; // nobody here watches it
        // First sight of a task of a watched user: track it from its start (or from the feed's join).
        t = { userId, seq: 0, watchers: 0, wantUpTo: 0 };
        if (from !== 1) t.notBefore = this.users.get(userId)!.since;
        this.tracked.set(taskId, t);
      }
      if (to > t.seq) wanted.push({ taskId, t, upTo: to });
    }
    if (wanted.length) this.stats.batches++;
    await this.fillMany(wanted);
  }

  /**
   * Fill several tasks from the event log, each up to at least its `upTo`: one query for all
   * those not being filled already (a fill in progress takes the new `upTo` on). A task still
   * behind after it (its events were stored meanwhile) is read again, with the others behind.
   */
  private async fillMany(wanted: Array<{ taskId: string; t: Tracked; upTo: number }>): Promise<void> {
    const waits: Promise<void>[] = [];
    let batch: Array<{ taskId: string; t: Tracked }> = [];
    for (const { taskId, t, upTo } of wanted) {
      t.wantUpTo = Math.max(t.wantUpTo, upTo);
      if (t.filling) waits.push(t.filling);
      else if (t.seq < t.wantUpTo) batch.push({ taskId, t });
    }
    while (batch.length) {
      const reading = this.readBatch(batch);
      const filling = reading.then(() => undefined);
      for (const { t } of batch) t.filling = filling;
      const progressed = await reading;
      batch = progressed.filter(({ t }) => t.seq < t.wantUpTo);
    }
    await Promise.all(waits);
  }

  /**
   * One query for the events after each task's seq; delivers them in seq order. Resolves (never
   * rejects: the position check retries) with the tasks that moved on.
   */
  private async readBatch(
    batch: Array<{ taskId: string; t: Tracked }>,
  ): Promise<Array<{ taskId: string; t: Tracked }>> {
    const moved: Array<{ taskId: string; t: Tracked }> = [];
    try {
      this.stats.reads++;
      const byTask = await this.tasks.eventsOfMany(
        batch.map(({ taskId, t }) => ({ id: taskId, user_id: t.userId, afterSeq: t.seq })),
      );
      for (const { taskId, t } of batch) {
        const events = byTask.get(taskId) ?? [];
        this.stats.eventsRead += events.length;
        const before = t.seq;
        this.deliverRead(t, events);
        if (t.seq > before) moved.push({ taskId, t });
      }
    } catch (err) {
      this.logger.warn(
        { err: (err as Error).message, tasks: batch.length },
        'reading events from the event log failed; the position check will retry',
      );
    } finally {
      for (const { t } of batch) {
        t.filling = undefined;
        t.notBefore = undefined;
      }
    }
    return moved;
  }

  /** Events read from the log for `t`, in seq order: deliver each next seq once (a hole stops it). */
  private deliverRead(t: Tracked, events: TaskEvent[]): void {
    for (const e of events) {
      if (e.seq <= t.seq) continue;
      if (e.seq !== t.seq + 1) break; // a hole in the log: cannot be
      const skip = t.notBefore !== undefined && new Date(e.inserted_at) < t.notBefore;
      if (!skip) this.sink(e);
      t.seq = e.seq;
      if (e.event.endsWith('_response')) t.doneAt = Date.now();
    }
  }

  /**
   * The position check: one query for the last seq of every task watched here (and the recently
   * changed tasks of watched users); each task behind is filled from the event log. Runs are
   * serialized; one asked for while another runs follows it.
   */
  check(): Promise<void> {
    if (this.checking) {
      this.checkAgain = true;
      return this.checking;
    }
    this.checking = this.runCheck()
      .catch((err) => {
        this.stats.failedChecks++;
        this.logger.warn({ err: (err as Error).message }, 'position check failed; retrying at the next tick');
      })
      .finally(() => {
        this.checking = undefined;
        if (this.checkAgain) {
          this.checkAgain = false;
          void this.check();
        }
      });
    return this.checking;
  }

  private async runCheck(): Promise<void> {
    const startedAt = Date.now();
    this.prune();
    const taskIds = [...this.tracked.entries()].filter(([, t]) => t.doneAt === undefined).map(([id]) => id);
    const userIds = [...this.users.keys()];
    if (!taskIds.length && !userIds.length) {
      this.lastCheckAt = startedAt;
      return;
    }
    // Users' tasks changed since the last check that covered them (or since their feed was joined).
    let from = startedAt;
    for (const u of this.users.values()) from = Math.min(from, u.checkedAt ?? u.since.getTime());
    const positions = await this.tasks.positions(taskIds, userIds, new Date(from - CLOCK_SLACK_MS));
    this.stats.checks++;
    const wanted: Array<{ taskId: string; t: Tracked; upTo: number }> = [];
    let behind = 0;
    for (const p of positions) {
      let t = this.tracked.get(p.id);
      if (!t) {
        const u = this.users.get(p.user_id);
        if (!u) continue;
        t = { userId: p.user_id, seq: 0, watchers: 0, wantUpTo: 0, notBefore: u.since };
        this.tracked.set(p.id, t);
      }
      if (p.last_seq > t.seq) {
        behind += p.last_seq - t.seq;
        wanted.push({ taskId: p.id, t, upTo: p.last_seq });
      }
    }
    await this.fillMany(wanted);
    if (behind) {
      this.stats.recovered += behind;
      this.logger.info({ events: behind }, 'position check: delivered events missed while the bus was down');
    }
    this.lastCheckAt = startedAt;
    for (const id of userIds) {
      const u = this.users.get(id);
      if (u) u.checkedAt = startedAt;
    }
  }

  /**
   * Forget tasks nobody here watches any more, and finished tasks once no check can find them
   * again: a check looks at users' tasks changed from CLOCK_SLACK_MS before the previous check,
   * so a task that ended well before that window is never found again.
   */
  private prune(): void {
    const horizon = this.lastCheckAt - 2 * CLOCK_SLACK_MS;
    for (const [id, t] of this.tracked) {
      if (t.watchers > 0 || t.filling) continue;
      const userWatched = this.users.has(t.userId);
      if (!userWatched || (t.doneAt !== undefined && t.doneAt < horizon)) this.tracked.delete(id);
    }
  }

  /** Resolves once remote deliveries queued so far are done. */
  async idle(): Promise<void> {
    await this.chain;
  }

  /** Stops the checks (the bus is closed by its owner, the gateway). */
  async close(): Promise<void> {
    clearInterval(this.timer);
  }
}
