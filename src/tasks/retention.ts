import type { Logger } from '../log';
import type { OutputStore } from '../storage/outputs';
import type { TaskStore } from './store';

/** How many tasks one transaction deletes. */
export const RETENTION_BATCH = 200;
/** How often a process sweeps (the first sweep is shortly after start). */
export const RETENTION_EVERY_MS = 3600_000;

/**
 * RETENTION_DAYS: finished tasks (succeeded, failed, canceled) whose end is older than that are
 * deleted, with their events and their stored output files, in batches. Every gateway process
 * sweeps; the batches lock their rows with SKIP LOCKED, so processes sweeping at the same time
 * share the work instead of colliding. A task that has not finished is never deleted.
 */
export class Retention {
  private timer: NodeJS.Timeout | undefined;
  private sweeping: Promise<number> | null = null;

  constructor(
    private readonly deps: { store: TaskStore; outputs: OutputStore; logger: Logger },
    private readonly opts: { days: number; batch?: number; now?: () => Date },
  ) {}

  /** The moment before which a finished task is deleted. */
  cutoff(): Date {
    const now = this.opts.now?.() ?? new Date();
    return new Date(now.getTime() - this.opts.days * 86_400_000);
  }

  /** Deletes every expired task, a batch at a time; resolves to how many. One sweep at a time. */
  sweep(): Promise<number> {
    this.sweeping ??= this.run().finally(() => {
      this.sweeping = null;
    });
    return this.sweeping;
  }

  private async run(): Promise<number> {
    const before = this.cutoff();
    const limit = this.opts.batch ?? RETENTION_BATCH;
    let total = 0;
    for (;;) {
      const ids = await this.deps.store.deleteFinished({ before, limit }, (batch) => this.deps.outputs.remove(batch));
      total += ids.length;
      if (ids.length < limit) break;
    }
    if (total > 0)
      this.deps.logger.info(
        { deleted: total, before: before.toISOString(), retention_days: this.opts.days },
        'retention: deleted finished tasks, their events and output files',
      );
    return total;
  }

  /** Sweep soon, then every `everyMs`; errors are logged and the next sweep tries again. */
  start(everyMs = RETENTION_EVERY_MS, firstAfterMs = 5000): void {
    const tick = (next: number) => {
      this.timer = setTimeout(() => {
        this.sweep()
          .catch((err: unknown) => this.deps.logger.warn({ err: String(err) }, 'retention sweep failed; will retry'))
          .finally(() => {
            if (this.timer) tick(everyMs);
          });
      }, next);
      this.timer.unref();
    };
    tick(firstAfterMs);
  }

  /** Stops the timer and waits for a sweep in flight. */
  async stop(): Promise<void> {
    clearTimeout(this.timer);
    this.timer = undefined;
    await this.sweeping?.catch(() => undefined);
  }
}
