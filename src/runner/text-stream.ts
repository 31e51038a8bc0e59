import type { Logger } from '../log';
import type { Provider } from '../providers/types';
import type { TaskService } from '../tasks/service';
import { codePoints } from '../tasks/text-appends';
import type { LeaseView } from '../tasks/task';

/** Whether a write may go ahead, judged on the task's row under its lock. */
export type MayWrite = (cur: LeaseView) => boolean;

/** Thrown (as an abort reason) when a run hands its task back: shutdown, a lost lease, a refused write. */
export class Released extends Error {}

/**
 * A text task's text as announced in its text_delta events. Each append is a compare-and-set
 * against the task row's `text_length` under its lock (TaskService.appendText, written together
 * with the other streams' deltas of the moment), so writers that see the same text (overlapping
 * webhook deliveries, the stream of a run whose lease lapsed, a retry after an answer lost in
 * transit) announce each part once, and the deltas join to the text.
 */
export class AnnouncedText {
  /** Characters (code points) of `announced`. */
  private chars: number;
  /** The writes of this writer, one after another (each builds on what the one before announced). */
  private queue: Promise<unknown> = Promise.resolve();

  private constructor(
    private readonly tasks: TaskService,
    private readonly taskId: string,
    private readonly may: MayWrite,
    private announced: string,
  ) {
    this.chars = codePoints(announced);
  }

  /** The text announced so far (a resumed run continues after it). */
  static async load(o: { tasks: TaskService; taskId: string; may: MayWrite }): Promise<AnnouncedText> {
    return new AnnouncedText(o.tasks, o.taskId, o.may, await o.tasks.store.announcedText(o.taskId));
  }

  get text(): string {
    return this.announced;
  }

  /**
   * Announce `tail`, the text that follows what is announced so far (`text`), as one text_delta
   * (what another writer announced of it already is left out). Returns false when the write is
   * refused (the task ended, or `may` says it is not ours). Rejects when the database does:
   * nothing is lost, a later append with the same tail (or a longer one) announces it. The cost
   * does not depend on how long the text is.
   */
  appendTail(tail: string): Promise<boolean> {
    return this.serial(() => this.writeTail(tail));
  }

  /**
   * Announce the part of `full` (the whole text so far, as the provider has it) beyond what is
   * stored. Returns false when the write is refused; rejects when the database does.
   */
  append(full: string): Promise<boolean> {
    return this.serial(async () => {
      if (full.startsWith(this.announced)) return this.writeTail(full.slice(this.announced.length));
      // Not a continuation of what this writer knows: compare from the start.
      const ok = await this.tasks.appendText({ taskId: this.taskId, knownChars: 0, tail: full, may: this.may });
      if (ok && codePoints(full) > this.chars) {
        this.announced = full;
        this.chars = codePoints(full);
      }
      return ok;
    });
  }

  /** Announce what `full` adds, when it continues the text announced so far. */
  async extendTo(full: string): Promise<void> {
    await this.serial(async () => {
      if (full.startsWith(this.announced) && full.length > this.announced.length)
        await this.writeTail(full.slice(this.announced.length));
    });
  }

  private serial<T>(fn: () => Promise<T>): Promise<T> {
    const run = this.queue.then(fn, fn);
    this.queue = run.catch(() => undefined);
    return run;
  }

  private async writeTail(tail: string): Promise<boolean> {
    if (!tail) return true;
    const ok = await this.tasks.appendText({ taskId: this.taskId, knownChars: this.chars, tail, may: this.may });
    if (!ok) return false;
    this.announced += tail;
    this.chars += codePoints(tail);
    return true;
  }
}

/** The least time between two writes of a stream's text (a few tokens per text_delta). */
const FLUSH_MS = 50;

/**
 * A prediction's SSE output stream, written into text_delta events as it arrives. The stream is
 * read from its start (a resumed run's too); what the task has announced already is skipped.
 * One write is in flight at a time: text that arrives meanwhile goes out with the next, so a
 * stream under pressure (a busy database) sends fewer, larger deltas instead of falling behind.
 * It never rejects: a write the database refuses is tried again at the next flush with the
 * longer text, and a stream that breaks leaves the run's polling to carry on.
 */
export class TextStream {
  /** Received text not yet announced (it follows the announced text). */
  private tail = '';
  /** UTF-16 units of the stream still to skip: the text announced before this stream started. */
  private skip: number;
  private writing: Promise<void> | undefined;
  private timer: NodeJS.Timeout | undefined;
  /** Stops the stream when a write is refused: the task ended, or another process holds it now. */
  private readonly refused = new AbortController();
  private readonly stopper = new AbortController();
  private done: Promise<void> | undefined;
  private writeFailures = 0;
  /** Told once when the provider ends the stream (the prediction ended): the run polls at once. */
  private readonly endListeners = new Set<() => void>();
  /** The stream ended with nobody listening yet: the next listener is told at once. */
  private endUnseen = false;
  /** When (performance.now()) the provider last sent an event on this stream; -Infinity before the first. */
  private lastEventAt = -Infinity;
  /** When (performance.now()) the last write began. */
  private lastWriteAt = -Infinity;
  private reading = false;

  constructor(private readonly o: { text: AnnouncedText; provider: Provider; log: Logger }) {
    this.skip = o.text.text.length;
  }

  /** Whether the stream was started (then polling leaves text to it until the prediction ends). */
  get started(): boolean {
    return this.done !== undefined;
  }

  /**
   * Whether the stream is being read and the provider sent an event on it at or after `since`
   * (a performance.now() time): it is carrying the prediction, so a poll would learn nothing new.
   */
  carriedSince(since: number): boolean {
    return this.reading && this.lastEventAt >= since;
  }

  /** Start reading `url` (once); `signal` ends it with the run. */
  start(url: string, signal: AbortSignal): void {
    if (this.done) return;
    const both = AbortSignal.any([signal, this.stopper.signal, this.refused.signal]);
    this.reading = true;
    this.done = this.read(url, both);
  }

  /** Stop reading and let the last writes land (the prediction ended, or the run did). */
  async stop(): Promise<void> {
    this.stopper.abort(new Released('stream stopped'));
    await this.done;
  }

  /**
   * Registers `wake` to be called when the provider ends the stream (its `done`: the prediction
   * ended), once; returns the unregister. An OnWake, for the run's wait between polls.
   */
  onEnded(wake: () => void): () => void {
    if (this.endUnseen) {
      this.endUnseen = false;
      setImmediate(wake);
      return () => {};
    }
    this.endListeners.add(wake);
    return () => this.endListeners.delete(wake);
  }

  private async read(url: string, signal: AbortSignal): Promise<void> {
    try {
      await this.o.provider.stream(url, {
        signal,
        onEvent: (ev) => {
          this.lastEventAt = performance.now();
          if (ev.event === 'output') this.received(ev.data);
        },
      });
      if (!signal.aborted) {
        if (this.endListeners.size) for (const l of [...this.endListeners]) l();
        else this.endUnseen = true;
        this.endListeners.clear();
      }
    } catch (err) {
      if (!signal.aborted) this.o.log.warn({ err: String(err) }, 'output stream ended early; polling continues');
    } finally {
      this.reading = false;
      clearTimeout(this.timer);
      this.timer = undefined;
      await this.writing;
      await this.flush();
    }
  }

  private received(data: string): void {
    if (this.skip > 0) {
      const n = Math.min(this.skip, data.length);
      this.skip -= n;
      data = data.slice(n);
    }
    this.tail += data;
    this.schedule();
  }

  /**
   * Arm the next write, if text waits and none is armed or in flight: FLUSH_MS after the last
   * write began (at once after a pause). A write that ends with more text waiting arms the next,
   * so a stream the database keeps waiting writes again as soon as it answers, with all of it.
   */
  private schedule(): void {
    if (this.timer || this.writing || !this.tail || !this.reading) return;
    const wait = Math.max(0, this.lastWriteAt + FLUSH_MS - performance.now());
    this.timer = setTimeout(() => {
      this.timer = undefined;
      void this.flush();
    }, wait);
  }

  /** Write what arrived and is not announced; resolves (never rejects) once it is written or given up. */
  private flush(): Promise<void> {
    if (this.writing) return this.writing;
    if (!this.tail || this.refused.signal.aborted) return Promise.resolve();
    this.lastWriteAt = performance.now();
    this.writing = this.write(this.tail).finally(() => {
      this.writing = undefined;
      this.schedule();
    });
    return this.writing;
  }

  private async write(chunk: string): Promise<void> {
    try {
      if (!(await this.o.text.appendTail(chunk))) this.refused.abort(new Released('write refused'));
      else this.tail = this.tail.slice(chunk.length);
    } catch (err) {
      // The database went away: what is not announced is written with the next flush (or, at
      // the end, by the run from the prediction's final output).
      if (this.writeFailures++ === 0)
        this.o.log.warn(
          { err: err instanceof Error ? err.message : String(err) },
          'could not write streamed text; retrying',
        );
    }
  }
}
