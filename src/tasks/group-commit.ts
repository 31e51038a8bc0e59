/** How much one group commit takes, and how many may run at once. */
export interface GroupCommitLimits {
  maxBatch: number;
  maxInFlight: number;
}

/**
 * The batching of a group commit: what callers hand over is queued, and the queue is written in
 * batches of at most `maxBatch`, at most `maxInFlight` at once. A lone item waits only for the end
 * of the current event-loop turn; batches form when callers overlap, and what arrives while the
 * writes run goes into the next one, so batches grow with the load instead of queueing.
 * Subclasses say how a batch is written (`write`, which settles each item and never rejects).
 */
export abstract class GroupCommit<T> {
  private waiting: T[] = [];
  private inFlight = 0;
  private scheduled = false;

  constructor(protected readonly limits: GroupCommitLimits) {}

  /** Queue `item` for the next batch. */
  protected enqueue(item: T): void {
    this.waiting.push(item);
    this.schedule();
  }

  /** Write one batch, settling each of its items. */
  protected abstract write(batch: T[]): Promise<void>;

  private schedule(): void {
    if (this.scheduled || this.inFlight >= this.limits.maxInFlight) return;
    this.scheduled = true;
    // Let the items handed over in this turn of the event loop join the batch.
    setImmediate(() => {
      this.scheduled = false;
      this.flush();
    });
  }

  private flush(): void {
    while (this.waiting.length && this.inFlight < this.limits.maxInFlight) {
      const batch = this.waiting.splice(0, this.limits.maxBatch);
      this.inFlight++;
      this.write(batch).finally(() => {
        this.inFlight--;
        if (this.waiting.length) this.schedule();
      });
    }
  }
}
