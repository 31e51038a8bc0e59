import type { TaskCreationLimit } from '../db/rate-limit';
import { GroupCommit, type GroupCommitLimits } from './group-commit';
import type { NewTaskValues, TaskStore } from './store';
import type { TaskRow } from './task';

export type { NewTaskValues } from './store';

interface Waiting {
  values: NewTaskValues;
  /** The creation limit this create takes from, in the insert's own statement; absent: none. */
  limit?: TaskCreationLimit;
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
 * A create may take from the per-user creation limit in the same statement (`insert`'s `limit`):
 * the batch's takes are made for all its users at once, and a task its user's bucket did not
 * grant is not inserted (its create rejects with RateLimitedError). Take and insert commit
 * together: a create costs one statement and one commit, not a take of its own before it.
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

  /** Store one task with its first event; resolves with the stored row. With `limit`, take from it first. */
  insert(values: NewTaskValues, limit?: TaskCreationLimit): Promise<TaskRow> {
    return new Promise<TaskRow>((resolve, reject) => {
      this.enqueue({ values, limit: limit?.enabled ? limit : undefined, resolve, reject });
    });
  }

  protected async write(batch: Waiting[]): Promise<void> {
    try {
      await this.settle(batch);
    } catch (err) {
      if (batch.length === 1) {
        batch[0]!.reject(err);
        return;
      }
      // One bad row fails the whole statement: write each alone so only that one fails.
      await Promise.all(
        batch.map(async (w) => {
          try {
            await this.settle([w]);
          } catch (e) {
            w.reject(e);
          }
        }),
      );
    }
  }

  /** Write `batch` in one statement and settle each of its items; throws if the statement fails. */
  private async settle(batch: Waiting[]): Promise<void> {
    const limit = batch.find((w) => w.limit)?.limit;
    if (!limit) {
      const rows = await this.store.insert(batch.map((w) => w.values));
      const byId = new Map(rows.map((r) => [r.id, r]));
      for (const w of batch) this.answer(w, byId);
      return;
    }
    // Each taking create's place among its user's, and how many each user asks.
    const asked = new Map<string, number>();
    const takes = batch.map((w) => {
      if (!w.limit) return null;
      const n = (asked.get(w.values.user_id) ?? 0) + 1;
      asked.set(w.values.user_id, n);
      return n;
    });
    const { rows, grants } = await this.store.insertTaking(
      batch.map((w) => w.values),
      takes,
      limit.insertTake([...asked].map(([user_id, n]) => ({ user_id, n }))),
    );
    const byId = new Map(rows.map((r) => [r.id, r]));
    const again: Waiting[] = [];
    batch.forEach((w, i) => {
      const take = takes[i];
      if (take === null || byId.has(w.values.id)) return this.answer(w, byId);
      const grant = grants.get(w.values.user_id);
      // No answer from the bucket: another process created it meanwhile; ask again.
      if (!grant) again.push(w);
      else w.reject(limit.refusal(grant.tokens));
    });
    for (const w of again) this.enqueue(w);
  }

  private answer(w: Waiting, byId: Map<string, TaskRow>): void {
    const row = byId.get(w.values.id);
    if (row) w.resolve(row);
    else w.reject(new Error(`task ${w.values.id} was not returned by its insert`));
  }
}
