import type { Logger } from '../log';
import type { PgNotifyChannel } from '../db/notify';
import type { TaskService } from '../tasks/service';
import type { TaskEvent } from '../tasks/task';

/** What crosses processes: which events to read, not the events (they can be large). */
type EventRef = [taskId: string, userId: string, fromSeq: number, toSeq: number];

/** Delivers a task's committed events to this process's subscribers. */
export type EventSink = (event: TaskEvent) => void;

/**
 * Makes every committed task event reach every gateway process. Events committed
 * here are delivered here at once; other processes are told by a NOTIFY that
 * names the task and seq range, and read the events from the database (the
 * source of truth). With embedded PGlite there is one process and no NOTIFY.
 */
export class TaskEventRelay {
  private chain: Promise<void> = Promise.resolve();

  constructor(
    private readonly tasks: TaskService,
    private readonly sink: EventSink,
    private readonly logger: Logger,
    private readonly notify?: PgNotifyChannel<EventRef>,
  ) {}

  async start(): Promise<void> {
    this.tasks.onEvents((events) => {
      for (const e of events) this.sink(e);
      if (this.notify && events.length) {
        const first = events[0]!;
        this.notify.send([first.task_id, first.user_id, first.seq, events[events.length - 1]!.seq]);
      }
    });
    await this.notify?.listen((refs) => {
      // One at a time, so a task's events go out in seq order.
      this.chain = this.chain
        .then(() => this.deliverRemote(refs))
        .catch((err) => this.logger.error({ err }, 'delivering events from another process failed'));
    });
  }

  private async deliverRemote(refs: EventRef[]): Promise<void> {
    for (const [taskId, userId, from, to] of refs) {
      const events = await this.tasks.eventsOf({ id: taskId, user_id: userId }, from - 1);
      for (const e of events) if (e.seq <= to) this.sink(e);
    }
  }

  /** Resolves once remote deliveries queued so far are done. */
  async idle(): Promise<void> {
    await this.chain;
  }

  async close(): Promise<void> {
    await this.notify?.close();
  }
}
