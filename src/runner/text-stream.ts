import type { Logger } from '../log';
import type { Provider } from '../providers/types';
import type { TaskService } from '../tasks/service';
import { TERMINAL, type TaskRow } from '../tasks/task';

/** Whether a write may go ahead, judged on the task's row under its lock. */
export type MayWrite = (cur: TaskRow) => boolean;

/** Thrown (as an abort reason) when a run hands its task back: shutdown, a lost lease, a refused write. */
export class Released extends Error {}

/**
 * A text task's text as announced in its text_delta events. Each append is a compare-and-set
 * under the row lock: the stored length is read there, so writers that see the same text
 * (overlapping webhook deliveries, the stream of a run whose lease lapsed, a retry after an
 * answer lost in transit) announce each part once, and the deltas join to the text.
 */
export class AnnouncedText {
  private constructor(
    private readonly tasks: TaskService,
    private readonly taskId: string,
    private readonly may: MayWrite,
    private announced: string,
  ) {}

  /** The text announced so far (a resumed run continues after it). */
  static async load(o: { tasks: TaskService; taskId: string; may: MayWrite }): Promise<AnnouncedText> {
    return new AnnouncedText(o.tasks, o.taskId, o.may, await o.tasks.store.announcedText(o.taskId));
  }

  get text(): string {
    return this.announced;
  }

  /**
   * Announce the part of `full` (the whole text so far, as the provider has it) beyond what is
   * stored, as one text_delta. Returns false when the write is refused (the task ended, or `may`
   * says it is not ours). Rejects when the database does: nothing is lost, a later append with
   * the same or a longer text announces the rest.
   */
  async append(full: string): Promise<boolean> {
    let refused = false;
    await this.tasks.apply(this.taskId, async (cur, trx) => {
      if (TERMINAL.has(cur.status) || !this.may(cur)) {
        refused = true;
        return null;
      }
      const chars = Array.from(full);
      const stored = await this.tasks.store.announcedLength(trx, this.taskId);
      if (chars.length <= stored) return null; // announced already, by another writer
      return { change: {}, events: [{ event: 'text_delta', payload: { delta: chars.slice(stored).join('') } }] };
    });
    if (refused) return false;
    if (full.length > this.announced.length) this.announced = full;
    return true;
  }

  /** Announce what `full` adds, when it continues the text announced so far. */
  async extendTo(full: string): Promise<void> {
    if (full.startsWith(this.announced) && full.length > this.announced.length) await this.append(full);
  }
}

/** How often received text is written out as a text_delta (a few tokens per event). */
const FLUSH_MS = 50;

/**
 * A prediction's SSE output stream, written into text_delta events as it arrives. The stream is
 * read from its start (a resumed run's too); what the task has announced already is skipped.
 * It never rejects: a write the database refuses is tried again at the next flush with the
 * longer text, and a stream that breaks leaves the run's polling to carry on.
 */
export class TextStream {
  /** The whole text received so far. */
  private received = '';
  /** How much of it is announced or on its way. */
  private queuedUpTo: number;
  private flushing: Promise<void> = Promise.resolve();
  private timer: NodeJS.Timeout | undefined;
  /** Stops the stream when a write is refused: the task ended, or another process holds it now. */
  private readonly refused = new AbortController();
  private readonly stopper = new AbortController();
  private done: Promise<void> | undefined;
  private writeFailures = 0;

  constructor(private readonly o: { text: AnnouncedText; provider: Provider; log: Logger }) {
    this.queuedUpTo = o.text.text.length;
  }

  /** Whether the stream was started (then polling leaves text to it until the prediction ends). */
  get started(): boolean {
    return this.done !== undefined;
  }

  /** Start reading `url` (once); `signal` ends it with the run. */
  start(url: string, signal: AbortSignal): void {
    if (this.done) return;
    const both = AbortSignal.any([signal, this.stopper.signal, this.refused.signal]);
    this.timer = setInterval(() => void this.flush(), FLUSH_MS);
    this.done = this.read(url, both);
  }

  /** Stop reading and let the last writes land (the prediction ended, or the run did). */
  async stop(): Promise<void> {
    this.stopper.abort(new Released('stream stopped'));
    await this.done;
  }

  private async read(url: string, signal: AbortSignal): Promise<void> {
    try {
      await this.o.provider.stream(url, {
        signal,
        onEvent: (ev) => {
          if (ev.event === 'output') this.received += ev.data;
        },
      });
    } catch (err) {
      if (!signal.aborted) this.o.log.warn({ err: String(err) }, 'output stream ended early; polling continues');
    } finally {
      clearInterval(this.timer);
      await this.flush();
    }
  }

  /** Write what arrived since the last flush; resolves (never rejects) once it is written or given up. */
  private flush(): Promise<void> {
    if (this.received.length <= this.queuedUpTo || this.refused.signal.aborted) return this.flushing;
    const full = this.received;
    this.queuedUpTo = full.length;
    this.flushing = this.flushing.then(() => this.write(full));
    return this.flushing;
  }

  private async write(full: string): Promise<void> {
    if (this.refused.signal.aborted) return;
    try {
      if (!(await this.o.text.append(full))) this.refused.abort(new Released('write refused'));
    } catch (err) {
      // The database went away: what is not announced is written with the next flush (or, at
      // the end, by the run from the prediction's final output).
      this.queuedUpTo = Math.min(this.queuedUpTo, this.o.text.text.length);
      if (this.writeFailures++ === 0)
        this.o.log.warn(
          { err: err instanceof Error ? err.message : String(err) },
          'could not write streamed text; retrying',
        );
    }
  }
}
