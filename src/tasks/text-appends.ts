import { GroupCommit, type GroupCommitLimits } from './group-commit';
import type { TaskStore } from './store';
import { TERMINAL, type LeaseView, type TaskEvent, type TextRow } from './task';

/**
 * One writer's text, to announce as a text_delta: the text continues, after the first
 * `knownChars` characters (announced already, as this writer knows), with `tail`.
 */
export interface TextAppend {
  taskId: string;
  /** Characters (code points) of the task's text this writer knows to be announced; `tail` follows them. */
  knownChars: number;
  tail: string;
  /** Whether the write may go ahead, judged on the task's row under its lock. */
  may: (cur: LeaseView) => boolean;
}

interface Waiting extends TextAppend {
  resolve: (written: boolean) => void;
  reject: (err: unknown) => void;
}

/** A task of a batch, as the batch leaves it. */
interface Pending {
  row: TextRow;
  last_seq: number;
  text_length: number;
  events: TaskEvent[];
}

/** PostgreSQL's deadlock_detected: the transaction was chosen as the victim and may simply run again. */
const DEADLOCK = '40P01';

/** Characters (code points) in `s`, as PostgreSQL's char_length counts them. */
export function codePoints(s: string): number {
  let n = s.length;
  for (let i = 0; i < s.length - 1; i++) {
    const c = s.charCodeAt(i);
    if (c >= 0xd800 && c <= 0xdbff) {
      const d = s.charCodeAt(i + 1);
      if (d >= 0xdc00 && d <= 0xdfff) {
        n--;
        i++;
      }
    }
  }
  return n;
}

/** `s` after its first `skip` code points ('' when it has no more). */
function afterCodePoints(s: string, skip: number): string {
  let i = 0;
  for (let k = 0; k < skip && i < s.length; k++) {
    const c = s.charCodeAt(i);
    const pair = c >= 0xd800 && c <= 0xdbff && i + 1 < s.length;
    i += pair ? 2 : 1;
  }
  return s.slice(i);
}

/**
 * Group commit for text deltas. Every text stream of a process (and the text that polls and
 * webhooks bring) hands its new text here; the writes that wait are done together, in one
 * transaction: the tasks' rows locked in id order, each delta decided as a compare-and-set
 * against the row's `text_length` (so two writers that see the same text, a lapsed lease or
 * overlapping webhook deliveries, announce each part once, and the cost of a delta does not
 * depend on how long the text already is), one multi-row insert of the events, one update of
 * the rows. Events are handed to listeners only after the commit.
 *
 * At most `maxInFlight` transactions run at once; what arrives meanwhile goes into the next
 * one, so the batches grow with the load (and each stream, which keeps one write in flight,
 * sends fewer, larger deltas) instead of queueing. A failed transaction rejects every write in
 * it: nothing was written, and the writers send the same text again (with more) later.
 */
export class TextAppends extends GroupCommit<Waiting> {
  /** Transactions written and deltas announced (for tests and the bench). */
  readonly stats = { transactions: 0, deltas: 0 };

  constructor(
    private readonly store: TaskStore,
    private readonly now: () => Date,
    /** Hands one task's committed events (in seq order) to the listeners. */
    private readonly publish: (events: TaskEvent[]) => void,
    limits: GroupCommitLimits = { maxBatch: 1000, maxInFlight: 2 },
  ) {
    super(limits);
  }

  /**
   * Announce what `a` adds to the task's text. Resolves true once it is stored (or was there
   * already), false when the write is refused (the task ended or is gone, or `may` says no);
   * rejects when the database does.
   */
  append(a: TextAppend): Promise<boolean> {
    return new Promise<boolean>((resolve, reject) => {
      this.enqueue({ ...a, resolve, reject });
    });
  }

  protected async write(batch: Waiting[]): Promise<void> {
    let outcome: Array<boolean | Error>;
    let tasks: Pending[];
    try {
      ({ outcome, tasks } = await this.transaction(batch).catch((err: unknown) => {
        if ((err as { code?: string }).code !== DEADLOCK) throw err;
        return this.transaction(batch);
      }));
    } catch (err) {
      for (const w of batch) w.reject(err);
      return;
    }
    for (const t of tasks) if (t.events.length) this.publish(t.events);
    batch.forEach((w, i) => {
      const o = outcome[i]!;
      if (o instanceof Error) w.reject(o);
      else w.resolve(o);
    });
  }

  /** One transaction for the batch: what each write came to, and the events each task got. */
  private async transaction(batch: Waiting[]): Promise<{ outcome: Array<boolean | Error>; tasks: Pending[] }> {
    const outcome: Array<boolean | Error> = [];
    const now = this.now();
    const at = now.toISOString();
    const tasks = await this.store.transaction(async (trx) => {
      const rows = await this.store.lockMany(trx, [...new Set(batch.map((w) => w.taskId))]);
      const byId = new Map<string, Pending>(
        rows.map((row) => [row.id, { row, last_seq: row.last_seq, text_length: row.text_length, events: [] }]),
      );
      const deltas: Array<{ task_id: string; seq: number; delta: string }> = [];
      for (const w of batch) {
        const t = byId.get(w.taskId);
        if (!t || TERMINAL.has(t.row.status) || !w.may(t.row)) {
          outcome.push(false);
          continue;
        }
        if (t.text_length < w.knownChars) {
          outcome.push(
            new Error(
              `task ${w.taskId} has ${t.text_length} characters of text announced, fewer than the ${w.knownChars} its writer counts on`,
            ),
          );
          continue;
        }
        outcome.push(true);
        const delta = afterCodePoints(w.tail, t.text_length - w.knownChars);
        if (!delta) continue; // announced already, by another writer
        const seq = ++t.last_seq;
        t.text_length += codePoints(delta);
        const e = {
          task_id: w.taskId,
          user_id: t.row.user_id,
          seq,
          event: 'text_delta',
          payload: { task_id: w.taskId, seq, delta },
          inserted_at: at,
        } as TaskEvent;
        t.events.push(e);
        deltas.push({ task_id: w.taskId, seq, delta });
      }
      const changed = [...byId.values()].filter((t) => t.events.length);
      await this.store.appendTextDeltas(
        trx,
        deltas,
        changed.map((t) => ({ id: t.row.id, last_seq: t.last_seq, text_length: t.text_length })),
        now,
      );
      return changed;
    });
    this.stats.transactions++;
    for (const t of tasks) this.stats.deltas += t.events.length;
    return { outcome, tasks };
  }
}
