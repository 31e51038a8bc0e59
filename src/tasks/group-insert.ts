import { GroupCommit, type GroupCommitLimits } from './group-commit';
import type { NewTaskValues, TaskStore } from './store';
import type { TaskRow } from './task';

export type { NewTaskValues } from './store';

interface Waiting {
  values: NewTaskValues;
  resolve: (row: TaskRow) => void;
  reject: (err: unknown) => void;
}

/**
 * Group commit for new tasks. Creates that arrive while the database is busy are written
 * together: one statement inserts every waiting task and its first event, so one round trip
 * and one commit (one WAL flush) serve many requests. A lone create waits only for the end of
 * the current event-loop turn; batches form when requests overlap (at most `maxInFlight`
 * statements run at once, and what arrives meanwhile goes into the next one).
 *
 * A batch is one statement, so it is atomic: if it fails, each of its tasks is retried on its
 * own, and only a task that fails alone gets the error. Ids are chosen before the insert, so a
 * retry after an answer lost in transit meets the unique key: nothing is ever written twice.
 */
export class GroupInsert extends GroupCommit<Waiting> {
  constructor(
    private readonly store: TaskStore,
    limits: GroupCommitLimits = { maxBatch: 256, maxInFlight: 2 },
  ) {
    super(limits);
  }

  /** Store one task with its first event; resolves with the stored row. */
  insert(values: NewTaskValues): Promise<TaskRow> {
    return new Promise<TaskRow>((resolve, reject) => {
      this.enqueue({ values, resolve, reject });
    });
  }

  protected async write(batch: Waiting[]): Promise<void> {
    try {
      const rows = await this.statement(batch.map((w) => w.values));
      const byId = new Map(rows.map((r) => [r.id, r]));
      for (const w of batch) {
        const row = byId.get(w.values.id);
        if (row) w.resolve(row);
        else w.reject(new Error(`task ${w.values.id} was not returned by its insert`));
      }
    } catch (err) {
      if (batch.length === 1) {
        batch[0]!.reject(err);
        return;
      }
      // One bad row fails the whole statement: write each alone so only that one fails.
      await Promise.all(
        batch.map(async (w) => {
          try {
            const [row] = await this.statement([w.values]);
            w.resolve(row!);
          } catch (e) {
            w.reject(e);
          }
        }),
      );
    }
  }

  private statement(values: NewTaskValues[]): Promise<TaskRow[]> {
    return this.store.insert(values);
  }
}
