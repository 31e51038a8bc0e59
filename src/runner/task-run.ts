import type { Logger } from '../log';
import {
  isProviderError,
  isTerminal,
  type CreatePredictionRequest,
  type Prediction,
  type Provider,
  type ProviderSet,
} from '../providers/types';
import { sleep, type OnWake } from '../retry';
import type { ModelSpec } from '../tasks/models';
import { outputsText, taskError } from '../tasks/events';
import { TERMINAL, type LeaseView, type TaskRow } from '../tasks/task';
import { outcomeOf, pollDelayMs, type RunOutcome } from './policy';
import { CANCELED_BY_USER } from '../tasks/events';
import { TaskWriter, type TaskWriterDeps } from './task-writer';
import { AnnouncedText, Released, TextStream } from './text-stream';

/** What a run needs from its runner. */
export interface TaskRunDeps extends Omit<TaskWriterDeps, 'openOutput'> {
  /** The providers by id: the task runs on the one its row names. */
  providers: ProviderSet;
  /** The runner's name in leases. */
  owner: string;
  pollIntervalMs: number;
  pollMaxIntervalMs: number;
  webhookPollIntervalMs: number;
  cancelGraceMs: number;
  /** The webhook URL for a task on a provider (when PUBLIC_URL is set); polling stays on as a safety net. */
  webhookUrl?: (taskId: string, provider: string) => string | undefined;
  now: () => Date;
}

/** How a run's wait between polls ends early: a webhook arrived (with the prediction it carried). */
export interface Wakeup {
  /** Where the run's poll waits register to be woken. */
  onWake: OnWake;
  /** The latest prediction a webhook delivered since the last call, if one did. */
  delivered: () => Prediction | undefined;
  /**
   * While on, the runner watches the task's row for the run (one query for all such runs): a
   * cancel request or an end wakes it. A run whose output stream carries the prediction skips its
   * own row reads and polls, and relies on this.
   */
  watch?: (on: boolean) => void;
}

/** A prediction being followed, and what the follow has done so far. */
interface Following {
  prediction: Prediction;
  startedAt: number;
  /** When we asked the provider to cancel (the user canceled the task), if we did. */
  cancelSentAt: number | null;
}

/**
 * One run of one claimed task: create its prediction (or resume or adopt the one it has) and
 * follow it to an end, writing progress, text and the end while this runner holds the lease.
 */
export class TaskRun {
  private readonly provider: Provider | undefined;
  /** Registers a wake for when the text stream ends (text tasks that stream). */
  private streamEnded: OnWake | undefined;
  /** Whether the text stream carried the prediction since a time (text tasks that stream). */
  private streamCarried: ((since: number) => boolean) | undefined;
  /** The last wait's poll was left out (the stream carried the prediction): so is the next row read. */
  private quiet = false;

  constructor(
    private readonly deps: TaskRunDeps,
    private readonly row: TaskRow,
    private readonly signal: AbortSignal,
    /** Ends a poll's wait early (a webhook arrived). */
    private readonly wakeup: Wakeup,
    private readonly log: Logger,
  ) {
    this.provider = deps.providers.get(row.provider);
  }

  /** A run's writes: only while this runner still holds the lease (a lapsed one may have been taken over). */
  readonly holdsLease = (cur: LeaseView) => cur.lease_owner === this.deps.owner;

  /** Run the task; the outcome says what is to become of it (see settle). */
  async run(): Promise<RunOutcome> {
    const model = this.deps.tasks.registry.get(this.row.model);
    if (!model || !this.provider)
      return {
        kind: 'fail',
        error: taskError('unsupported_model', `model ${this.row.model} is no longer available`),
        ...(model ? { providerError: `provider ${this.row.provider} is not configured` } : {}),
      };
    try {
      if (this.row.cancel_requested) return await this.cancelBeforeFollowing(model);
      const started = this.row.prediction_id ? await this.resume() : await this.start(model);
      if (!started) return { kind: 'done' };
      return await this.follow(model, started.row, started.prediction);
    } catch (err) {
      // A lost lease is not a failed try: the task is someone else's now.
      if (this.signal.aborted || err instanceof Released) return { kind: 'release' };
      const outcome = outcomeOf(err);
      this.log.warn(
        { err: err instanceof Error ? err.message : String(err), outcome: outcome.kind },
        'run ended with an error',
      );
      return outcome;
    }
  }

  private async cancelBeforeFollowing(model: ModelSpec): Promise<RunOutcome> {
    if (this.row.prediction_id) await this.provider!.cancel(this.row.prediction_id, { signal: this.signal });
    await this.writer(model, null).finish({ status: 'canceled', error: CANCELED_BY_USER });
    return { kind: 'done' };
  }

  private async resume(): Promise<{ row: TaskRow; prediction: Prediction }> {
    const id = this.row.prediction_id!;
    this.log.info({ prediction_id: id }, 'resuming prediction');
    return { row: this.row, prediction: await this.provider!.get(id, { signal: this.signal }) };
  }

  /**
   * Create the task's prediction (or adopt the one an earlier try created but never heard back
   * about) and record it on the task. Null when the task no longer needs one (it ended).
   */
  private async start(model: ModelSpec): Promise<{ row: TaskRow; prediction: Prediction } | null> {
    const request = this.request(model);
    let prediction: Prediction | null = null;
    if (this.row.create_attempted_at) {
      prediction = await this.adopt(request, new Date(this.row.create_attempted_at));
      if (prediction)
        this.log.warn({ prediction_id: prediction.id }, 'adopted a prediction whose create answer was lost');
    }
    prediction ??= await this.create(request);
    const row = await this.record(prediction);
    return row ? { row, prediction } : null;
  }

  private request(model: ModelSpec): CreatePredictionRequest {
    const webhook = this.deps.webhookUrl?.(this.row.id, this.row.provider);
    return {
      model: model.providerModel as CreatePredictionRequest['model'],
      input: this.row.provider_input,
      ...(webhook ? { webhook, webhookEventsFilter: webhookEvents(model) } : {}),
    } as CreatePredictionRequest;
  }

  /** The prediction `request` created at or after `since`, that no other task owns. */
  private async adopt(request: CreatePredictionRequest, since: Date): Promise<Prediction | null> {
    const excludeIds = await this.deps.tasks.store.predictionsOfOthers({
      providerModel: this.row.provider_model,
      exceptId: this.row.id,
      since: new Date(since.getTime() - 10 * 60_000),
    });
    return this.provider!.findCreated(request, since, { signal: this.signal, excludeIds });
  }

  private async create(request: CreatePredictionRequest): Promise<Prediction> {
    const attemptedAt = this.deps.now();
    const marked = await this.deps.tasks.apply(this.row.id, (cur) =>
      this.holdsLease(cur) && !cur.prediction_id && !TERMINAL.has(cur.status)
        ? { change: { create_attempted_at: attemptedAt } }
        : null,
    );
    // Another process holds the task now (our lease lapsed), or it ended: creating would run it twice.
    if (!marked) throw new Released('lease lost before create');
    let prediction: Prediction | null;
    try {
      prediction = await this.provider!.create({ ...request, signal: this.signal });
    } catch (err) {
      if (!isProviderError(err) || err.kind !== 'ambiguous_create') throw err;
      this.log.warn({ err: err.message }, 'create answer lost; looking the prediction up');
      prediction = await this.adopt(request, attemptedAt);
      if (!prediction) throw err;
    }
    this.log.info({ prediction_id: prediction.id }, 'prediction created');
    return prediction;
  }

  /** Store the prediction on the task; undefined (and the prediction canceled) when the task no longer needs it. */
  private async record(p: Prediction): Promise<TaskRow | undefined> {
    let theirs: string | null = null;
    const updated = await this.deps.tasks.apply(this.row.id, (cur) => {
      if (TERMINAL.has(cur.status)) return null;
      // A process that took the task over while our create was in flight made its own.
      if (cur.prediction_id && cur.prediction_id !== p.id) {
        theirs = cur.prediction_id;
        return null;
      }
      return { change: { prediction_id: p.id, status: 'processing' } };
    });
    if (updated) return updated;
    // Canceled, or run elsewhere, meanwhile: do not leave this prediction running (and billing).
    this.log.warn(
      { prediction_id: p.id, other_prediction_id: theirs },
      'canceling a prediction the task no longer needs',
    );
    await this.provider!.cancel(p.id, { signal: this.signal }).catch(() => undefined);
    if (theirs) throw new Released('task taken over during create');
    return undefined;
  }

  private writer(model: ModelSpec, text: AnnouncedText | null): TaskWriter {
    const provider = this.provider!;
    const deps = { ...this.deps, openOutput: provider.openOutput.bind(provider) };
    return new TaskWriter(deps, { id: this.row.id, model }, this.holdsLease, text);
  }

  /** Poll (and stream) a prediction until it ends, our deadline passes, or the task is canceled. */
  private async follow(model: ModelSpec, row: TaskRow, first: Prediction): Promise<RunOutcome> {
    const text = outputsText(model.taskType)
      ? await AnnouncedText.load({ tasks: this.deps.tasks, taskId: row.id, may: this.holdsLease })
      : null;
    const writer = this.writer(model, text);
    const stream = text && model.streams ? new TextStream({ text, provider: this.provider!, log: this.log }) : null;
    this.streamEnded = stream ? (wake) => stream.onEnded(wake) : undefined;
    this.streamCarried = stream ? (since) => stream.carriedSince(since) : undefined;
    const f: Following = {
      prediction: first,
      startedAt: row.started_at ? new Date(row.started_at).getTime() : this.deps.now().getTime(),
      cancelSentAt: null,
    };
    try {
      for (;;) {
        const { prediction } = f;
        if (stream && prediction.urls.stream && !isTerminal(prediction.status))
          stream.start(prediction.urls.stream, this.signal);
        // Let the stream's last deltas land before the end appends what it missed.
        if (isTerminal(prediction.status)) await stream?.stop();
        if (await writer.sync({ prediction, streaming: stream?.started ?? false, signal: this.signal }))
          return { kind: 'done' };
        const outcome = await this.step(model, writer, f);
        if (outcome) return outcome;
      }
    } finally {
      this.wakeup.watch?.(false);
      await stream?.stop();
    }
  }

  /** Between two polls: check the task, send a cancel, watch the deadlines, then poll. */
  private async step(model: ModelSpec, writer: TaskWriter, f: Following): Promise<RunOutcome | null> {
    const now = () => this.deps.now().getTime();
    // After a quiet wait the runner's watch stands for this read (a cancel or an end would have
    // woken the run), and its lease renewal for the lease check.
    const cur = this.quiet ? null : await this.deps.tasks.find(this.row.id);
    if (!this.quiet && (!cur || TERMINAL.has(cur.status))) return { kind: 'done' };
    if (cur && !this.holdsLease(cur)) throw new Released('lease lost');
    if (cur?.cancel_requested && f.cancelSentAt === null) {
      this.log.info({ prediction_id: f.prediction.id }, 'canceling prediction');
      f.prediction = await this.provider!.cancel(f.prediction.id, { signal: this.signal });
      f.cancelSentAt = now();
      return null;
    }
    if (f.cancelSentAt !== null && now() - f.cancelSentAt > this.deps.cancelGraceMs) {
      // The provider took the cancel but the prediction runs on: do not poll it forever.
      this.log.warn(
        { prediction_id: f.prediction.id, status: f.prediction.status, grace_ms: this.deps.cancelGraceMs },
        'prediction did not end after its cancel; ending the task canceled',
      );
      await writer.finish({ status: 'canceled', error: CANCELED_BY_USER });
      return { kind: 'done' };
    }
    if (f.cancelSentAt === null && now() - f.startedAt > model.deadlineMs) {
      // settle() fails the task and cancels the prediction.
      this.log.warn(
        { prediction_id: f.prediction.id, deadline_ms: model.deadlineMs },
        'deadline passed; canceling prediction',
      );
      const seconds = Math.round(model.deadlineMs / 1000);
      return {
        kind: 'fail',
        error: taskError('timeout', `no result within ${seconds} s; the generation was canceled`),
      };
    }
    await this.poll(model, f);
    return null;
  }

  /**
   * Wait for the next poll (a tenth of the prediction's age, see pollDelayMs; a webhook ends the
   * wait), then read the prediction: as the webhook delivered it if that is not behind what we
   * have (deliveries can come out of order), else from the provider. A delivery that comes while
   * the read waits for its turn under the read budget ends that wait too (the end of a video is
   * acted on at once, not after the queue of polls ahead of it).
   */
  private async poll(model: ModelSpec, f: Following): Promise<void> {
    const deliveriesCarryAll =
      this.deps.webhookUrl?.(this.row.id, this.row.provider) !== undefined && deliversProgress(model);
    const age = this.deps.now().getTime() - f.startedAt;
    // A stream that carries the prediction (its output, and its end would wake us) stands for the
    // polls while it does, with the runner watching the row: streams cost no reads of their own.
    const streaming = f.cancelSentAt === null && this.streamCarried !== undefined;
    this.wakeup.watch?.(streaming);
    // A webhook ends the wait, and so does the end of the output stream (the prediction ended).
    let woken = false;
    const onWake: OnWake = (wake) => {
      const woke = () => {
        woken = true;
        wake();
      };
      const offWebhook = this.wakeup.onWake(woke);
      const offStream = this.streamEnded?.(woke);
      return () => {
        offWebhook?.();
        offStream?.();
      };
    };
    const since = performance.now();
    await sleep(pollDelayMs(age, this.deps, deliveriesCarryAll), this.signal, onWake);
    this.quiet = streaming && !woken && this.streamCarried!(since);
    if (this.quiet || this.takeDelivered(f)) return;
    const nudged = new AbortController();
    const off = this.wakeup.onWake(() => nudged.abort(new Error('nudged while waiting to poll')));
    try {
      f.prediction = await this.provider!.get(f.prediction.id, {
        signal: AbortSignal.any([this.signal, nudged.signal]),
      });
    } catch (err) {
      if (!nudged.signal.aborted || this.signal.aborted) throw err;
      this.takeDelivered(f); // else nothing new: the next step polls again
    } finally {
      off?.();
    }
  }

  /** Uses the prediction a webhook delivered, if it is this one's and not behind what we have. */
  private takeDelivered(f: Following): boolean {
    const delivered = this.wakeup.delivered();
    if (!delivered || delivered.id !== f.prediction.id || isBehind(delivered, f.prediction)) return false;
    f.prediction = delivered;
    return true;
  }
}

/**
 * Whether a task's webhook deliveries carry its progress too. Text: yes, every output and log (its
 * deltas), so polls are only a safety net. Image and video: no, they ask for the start, the output
 * and the end; their progress (in the logs) comes from polls on the age-based schedule, paced by the
 * read budget. A logs delivery costs the gateway about what a poll does, and Replicate sends one every
 * 500 ms per prediction: 2,000 videos in flight would bring ~400 a second (bench/RESULTS.md, (h)).
 */
function deliversProgress(model: ModelSpec): boolean {
  return outputsText(model.taskType);
}

/** The deliveries a task asks for (see deliversProgress). */
function webhookEvents(model: ModelSpec): CreatePredictionRequest['webhookEventsFilter'] {
  return deliversProgress(model) ? ['start', 'output', 'logs', 'completed'] : ['start', 'output', 'completed'];
}

const STAGE: Record<string, number> = { starting: 0, processing: 1 };

/** Whether `p` shows an earlier state of the prediction than `than` (an older webhook delivery). */
function isBehind(p: Prediction, than: Prediction): boolean {
  if (isTerminal(than.status)) return !isTerminal(p.status) || p.status !== than.status;
  if (isTerminal(p.status)) return false;
  const [a, b] = [STAGE[p.status] ?? 0, STAGE[than.status] ?? 0];
  if (a !== b) return a < b;
  return (p.logs?.length ?? 0) < (than.logs?.length ?? 0) || outputSize(p) < outputSize(than);
}

function outputSize(p: Prediction): number {
  const o = p.output;
  return o === null || o === undefined ? 0 : Array.isArray(o) ? o.length : typeof o === 'string' ? o.length : 1;
}
