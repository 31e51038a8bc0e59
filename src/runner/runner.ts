import os from 'node:os';
import { randomBytes } from 'node:crypto';
import PQueue from 'p-queue';
import type { Db } from '../db';
import type { Logger } from '../log';
import { normalizeOutput, parseProgress } from '../providers/progress';
import {
  isProviderError,
  isTerminal,
  type CreatePredictionRequest,
  type Prediction,
  type Provider,
} from '../providers/types';
import type { ModelSpec } from '../tasks/models';
import type { TaskService } from '../tasks/service';
import { TERMINAL, type TaskError, type TaskRow } from '../tasks/task';
import type { OutputOpener, OutputStore } from '../storage/outputs';
import { backoffMs, DEFAULT_RETRY, outcomeOf, type RetryPolicy, type RunOutcome } from './policy';

export interface RunnerOptions {
  db: Db;
  tasks: TaskService;
  provider: Provider;
  /** Downloads provider output files (the Replicate client's openOutput). */
  openOutput: OutputOpener;
  outputs: OutputStore;
  logger: Logger;
  /** This process's name in leases. */
  owner?: string;
  concurrency?: number;
  perModelConcurrency?: number;
  leaseMs?: number;
  claimIntervalMs?: number;
  pollIntervalMs?: number;
  retry?: RetryPolicy;
  /**
   * How long a canceled task waits for its prediction to confirm the cancel (reach an end)
   * before the task ends canceled anyway and is no longer followed. Default 60 s.
   */
  cancelGraceMs?: number;
  /** The webhook URL for a task (when PUBLIC_URL is set); polling stays on as a safety net. */
  webhookUrl?: (taskId: string) => string;
  now?: () => Date;
}

interface Running {
  abort: AbortController;
  /** Poll now instead of waiting (a webhook arrived). */
  nudge: () => void;
}

/** Whether a write may go ahead, judged on the task's row under its lock. */
type MayWrite = (cur: TaskRow) => boolean;

/** Registers a sleeper's wake-up; returns how to unregister it (or wakes it at once). */
type OnNudge = (wake: () => void) => (() => void) | void;

const sleep = (ms: number, signal: AbortSignal, nudge?: OnNudge) =>
  new Promise<void>((resolve, reject) => {
    if (signal.aborted) return reject(signal.reason);
    let off: (() => void) | void;
    const done = () => {
      clearTimeout(t);
      signal.removeEventListener('abort', onAbort);
      off?.();
      resolve();
    };
    const onAbort = () => {
      clearTimeout(t);
      off?.();
      reject(signal.reason);
    };
    const t = setTimeout(done, ms);
    signal.addEventListener('abort', onAbort, { once: true });
    off = nudge?.(done);
  });

class Released extends Error {
  constructor(reason: string) {
    super(reason);
  }
}

/**
 * Runs tasks on the provider, each to an honest end exactly once. Work is claimed
 * from the database (FOR UPDATE SKIP LOCKED, with a renewed lease), so any number
 * of gateway processes on one PostgreSQL share it; p-queue bounds concurrency in
 * this process, globally and per model. A task whose lease lapsed is taken over;
 * one that has a prediction resumes it instead of creating another.
 */
export class TaskRunner {
  readonly owner: string;
  private readonly queue: PQueue;
  private readonly perModel = new Map<string, PQueue>();
  private readonly running = new Map<string, Running>();
  private readonly opts: Required<Omit<RunnerOptions, 'webhookUrl' | 'owner'>> & Pick<RunnerOptions, 'webhookUrl'>;
  private claimTimer: NodeJS.Timeout | undefined;
  private leaseTimer: NodeJS.Timeout | undefined;
  private claiming: Promise<void> | undefined;
  private stopped = true;
  private wakeAgain = false;

  constructor(options: RunnerOptions) {
    this.owner = options.owner ?? `${os.hostname()}:${process.pid}:${randomBytes(3).toString('hex')}`;
    this.opts = {
      concurrency: 8,
      perModelConcurrency: 4,
      leaseMs: 30_000,
      claimIntervalMs: 1000,
      pollIntervalMs: 1000,
      retry: DEFAULT_RETRY,
      cancelGraceMs: 60_000,
      now: () => new Date(),
      ...(Object.fromEntries(Object.entries(options).filter(([, v]) => v !== undefined)) as RunnerOptions),
    };
    this.queue = new PQueue({ concurrency: this.opts.concurrency });
  }

  start(): void {
    if (!this.stopped) return;
    this.stopped = false;
    this.claimTimer = setInterval(() => this.wake(), this.opts.claimIntervalMs);
    this.claimTimer.unref();
    this.leaseTimer = setInterval(() => void this.renewLeases(), Math.max(100, Math.floor(this.opts.leaseMs / 3)));
    this.leaseTimer.unref();
    this.wake();
  }

  /** Look for work now (a task was created, or the timer ticked). */
  wake(): void {
    if (this.stopped) return;
    if (this.claiming) {
      this.wakeAgain = true;
      return;
    }
    this.claiming = this.claim()
      .catch((err) => this.opts.logger.error({ err }, 'claiming tasks failed'))
      .finally(() => {
        this.claiming = undefined;
        if (this.wakeAgain) {
          this.wakeAgain = false;
          this.wake();
        }
      });
  }

  /** A provider told us (webhook) that a prediction changed: poll it now, or sync it here. */
  async predictionChanged(taskId: string, prediction: Prediction): Promise<void> {
    const local = this.running.get(taskId);
    if (local) return local.nudge();
    const row = await this.opts.tasks.find(taskId);
    if (!row || row.prediction_id !== prediction.id || TERMINAL.has(row.status)) return;
    // A run follows it, here (claimed while we read) or in another process (a webhook may land
    // on any process): its polls will see this. Syncing here too would race its stream.
    if (!this.unheld(row)) return this.running.get(taskId)?.nudge();
    const model = this.opts.tasks.registry.get(row.model);
    if (!model) return;
    // Continue the text deltas already announced, so that they still join to the final text.
    const text = { emitted: model.taskType === 'text_gen' ? await this.emittedText(row) : null };
    // Every write checks again, under the row lock, that no run has claimed the task meanwhile.
    await this.sync(row, model, prediction, new AbortController().signal, text, false, this.unheld);
  }

  /** A run's writes: only while this runner still holds the lease (a lapsed one may have been taken over). */
  private readonly holdsLease: MayWrite = (cur) => cur.lease_owner === this.owner;

  /** A webhook's writes for a task: only while no run holds it, here or elsewhere. */
  private readonly unheld: MayWrite = (cur) => {
    if (this.running.has(cur.id)) return false;
    const leasedElsewhere =
      cur.lease_owner !== null &&
      cur.lease_owner !== this.owner &&
      cur.lease_expires_at !== null &&
      new Date(cur.lease_expires_at) > this.opts.now();
    return !leasedElsewhere;
  };

  /** Stop claiming; let running work finish up to the deadline; release the rest. */
  async stop(deadlineMs = 10_000): Promise<void> {
    if (this.stopped) return;
    this.stopped = true;
    clearInterval(this.claimTimer);
    await this.claiming;
    const idle = this.queue.onIdle();
    const timedOut = await Promise.race([
      idle.then(() => false),
      new Promise<boolean>((r) => setTimeout(() => r(true), deadlineMs).unref()),
    ]);
    if (timedOut) {
      for (const r of this.running.values()) r.abort.abort(new Released('shutting down'));
      await this.queue.onIdle();
    }
    clearInterval(this.leaseTimer);
  }

  get activeCount(): number {
    return this.running.size;
  }

  private async claim(): Promise<void> {
    const free = this.opts.concurrency - this.running.size;
    if (free <= 0) return;
    const now = this.opts.now();
    const rows = await this.opts.tasks.store.claim({
      owner: this.owner,
      now,
      leaseUntil: new Date(now.getTime() + this.opts.leaseMs),
      limit: free,
      running: [...this.running.keys()],
    });
    for (const row of rows) this.enqueue(row);
  }

  private enqueue(row: TaskRow): void {
    const abort = new AbortController();
    // A nudge that comes while the run is busy (mid-request) is kept for its next sleep.
    let wake: (() => void) | undefined;
    let nudged = false;
    const entry: Running = { abort, nudge: () => (wake ? wake() : void (nudged = true)) };
    const onNudge: OnNudge = (w) => {
      if (nudged) {
        nudged = false;
        return w();
      }
      wake = w;
      return () => {
        wake = undefined;
      };
    };
    this.running.set(row.id, entry);
    const log = this.opts.logger.child({ task_id: row.id, model: row.model });
    let modelQueue = this.perModel.get(row.model);
    if (!modelQueue) {
      modelQueue = new PQueue({ concurrency: this.opts.perModelConcurrency });
      this.perModel.set(row.model, modelQueue);
    }
    const mq = modelQueue;
    void this.queue
      .add(() =>
        mq.add(async () => {
          const outcome = await this.run(row, abort.signal, onNudge, log);
          await this.settle(row, outcome, log);
        }),
      )
      .catch((err) => log.error({ err }, 'task run crashed'))
      .finally(() => {
        this.running.delete(row.id);
        if (!this.stopped) this.wake();
      });
  }

  /** One run of a task: create or resume its prediction and follow it to an end. */
  private async run(row: TaskRow, signal: AbortSignal, onNudge: OnNudge, log: Logger): Promise<RunOutcome> {
    const { provider, tasks } = this.opts;
    const model = tasks.registry.get(row.model);
    if (!model)
      return {
        kind: 'fail',
        error: { code: 'unsupported_model', message: `model ${row.model} is not in the registry` },
      };
    const request: CreatePredictionRequest = {
      model: model.providerModel as CreatePredictionRequest['model'],
      input: row.provider_input,
      ...(this.opts.webhookUrl
        ? {
            webhook: this.opts.webhookUrl(row.id),
            webhookEventsFilter: ['start', 'output', 'logs', 'completed'] as const,
          }
        : {}),
    } as CreatePredictionRequest;
    try {
      let current = row;
      if (current.cancel_requested) {
        if (current.prediction_id) await provider.cancel(current.prediction_id, { signal });
        await this.finish(row.id, this.holdsLease, 'canceled', { code: 'canceled', message: 'canceled by the user' });
        return { kind: 'done' };
      }
      let prediction: Prediction | null = null;
      if (current.prediction_id) {
        log.info({ prediction_id: current.prediction_id }, 'resuming prediction');
        prediction = await provider.get(current.prediction_id, { signal });
      } else {
        if (current.create_attempted_at) {
          const since = new Date(current.create_attempted_at);
          prediction = await provider.findCreated(request, since, {
            signal,
            excludeIds: await this.othersPredictions(row, since),
          });
          if (prediction)
            log.warn({ prediction_id: prediction.id }, 'adopted a prediction whose create answer was lost');
        }
        if (!prediction) {
          const attemptedAt = this.opts.now();
          const marked = await tasks.apply(row.id, (cur) =>
            cur.lease_owner === this.owner && !cur.prediction_id && !TERMINAL.has(cur.status)
              ? { change: { create_attempted_at: attemptedAt } }
              : null,
          );
          // Another process holds the task now (our lease lapsed), or it ended: creating would run it twice.
          if (!marked) throw new Released('lease lost before create');
          try {
            prediction = await provider.create({ ...request, signal });
          } catch (err) {
            if (isProviderError(err) && err.kind === 'ambiguous_create') {
              log.warn({ err: err.message }, 'create answer lost; looking the prediction up');
              prediction = await provider.findCreated(request, attemptedAt, {
                signal,
                excludeIds: await this.othersPredictions(row, attemptedAt),
              });
              if (!prediction) throw err;
            } else {
              throw err;
            }
          }
          log.info({ prediction_id: prediction.id }, 'prediction created');
        }
        const p = prediction;
        let theirs: string | null = null;
        const updated = await tasks.apply(row.id, (cur) => {
          if (TERMINAL.has(cur.status)) return null;
          // A process that took the task over while our create was in flight made its own.
          if (cur.prediction_id && cur.prediction_id !== p.id) {
            theirs = cur.prediction_id;
            return null;
          }
          return { change: { prediction_id: p.id, status: 'processing' } };
        });
        if (!updated) {
          // Canceled, or run elsewhere, meanwhile: do not leave this prediction running (and billing).
          log.warn(
            { prediction_id: p.id, other_prediction_id: theirs },
            'canceling a prediction the task no longer needs',
          );
          await provider.cancel(p.id, { signal }).catch(() => undefined);
          if (theirs) throw new Released('task taken over during create');
          return { kind: 'done' };
        }
        current = updated;
      }
      return await this.follow(current, model, prediction, signal, onNudge, log);
    } catch (err) {
      // A lost lease is not a failed try: the task is someone else's now.
      if (signal.aborted || err instanceof Released) return { kind: 'release' };
      const outcome = outcomeOf(err);
      log.warn(
        { err: err instanceof Error ? err.message : String(err), outcome: outcome.kind },
        'run ended with an error',
      );
      return outcome;
    }
  }

  /** Predictions other tasks of the same model already own (never to be adopted by this one). */
  private async othersPredictions(row: TaskRow, since: Date): Promise<string[]> {
    return this.opts.tasks.store.predictionsOfOthers({
      providerModel: row.provider_model,
      exceptId: row.id,
      since: new Date(since.getTime() - 10 * 60_000),
    });
  }

  /** Poll (and stream) a prediction until it ends, our deadline passes, or the task is canceled. */
  private async follow(
    row: TaskRow,
    model: ModelSpec,
    first: Prediction,
    signal: AbortSignal,
    onNudge: OnNudge,
    log: Logger,
  ): Promise<RunOutcome> {
    const { provider, tasks } = this.opts;
    const text = { emitted: model.taskType === 'text_gen' ? await this.emittedText(row) : null };
    const startedAt = row.started_at ? new Date(row.started_at).getTime() : this.opts.now().getTime();
    let streaming: Promise<unknown> | undefined;
    const streamAbort = new AbortController();
    signal.addEventListener('abort', () => streamAbort.abort(signal.reason), { once: true });
    let prediction = first;
    // When we asked the provider to cancel (the user canceled the task), if we did.
    let cancelSentAt: number | null = null;
    try {
      for (;;) {
        if (model.streams && prediction.urls.stream && !streaming && !isTerminal(prediction.status)) {
          streaming = this.stream(row, prediction.urls.stream, text, streamAbort.signal, log);
        }
        if (streaming && isTerminal(prediction.status)) {
          // Let the stream's last deltas land before the end appends what it missed.
          streamAbort.abort(new Released('prediction ended'));
          await streaming.catch(() => undefined);
        }
        const ended = await this.sync(row, model, prediction, signal, text, streaming !== undefined, this.holdsLease);
        if (ended) return { kind: 'done' };
        const cur = await tasks.find(row.id);
        if (!cur || TERMINAL.has(cur.status)) return { kind: 'done' };
        if (cur.lease_owner !== this.owner) throw new Released('lease lost');
        if (cur.cancel_requested && cancelSentAt === null) {
          log.info({ prediction_id: prediction.id }, 'canceling prediction');
          prediction = await provider.cancel(prediction.id, { signal });
          cancelSentAt = this.opts.now().getTime();
          continue;
        }
        if (cancelSentAt !== null && this.opts.now().getTime() - cancelSentAt > this.opts.cancelGraceMs) {
          // The provider took the cancel but the prediction runs on: do not poll it forever.
          log.warn(
            { prediction_id: prediction.id, status: prediction.status, grace_ms: this.opts.cancelGraceMs },
            'prediction did not end after its cancel; ending the task canceled',
          );
          await this.finish(row.id, this.holdsLease, 'canceled', { code: 'canceled', message: 'canceled by the user' });
          return { kind: 'done' };
        }
        if (cancelSentAt === null && this.opts.now().getTime() - startedAt > model.deadlineMs) {
          // settle() fails the task and cancels the prediction.
          log.warn(
            { prediction_id: prediction.id, deadline_ms: model.deadlineMs },
            'deadline passed; canceling prediction',
          );
          return {
            kind: 'fail',
            error: {
              code: 'timeout',
              message: `no result within ${Math.round(model.deadlineMs / 1000)} s; the prediction was canceled`,
            },
          };
        }
        await sleep(this.opts.pollIntervalMs, signal, onNudge);
        prediction = await provider.get(prediction.id, { signal });
      }
    } finally {
      streamAbort.abort(new Released('follow ended'));
      await streaming?.catch(() => undefined);
    }
  }

  /** Text already announced in text_delta events (a resumed run continues after it). */
  private async emittedText(row: TaskRow): Promise<string> {
    return this.opts.tasks.store.announcedText(row.id);
  }

  /** Stream text output over SSE into text_delta events, a few tokens per event. */
  private async stream(
    row: TaskRow,
    url: string,
    text: { emitted: string | null },
    signal: AbortSignal,
    log: Logger,
  ): Promise<void> {
    // The whole text so far: a stream (also a resumed run's) is read from its start.
    let received = '';
    // How much of it is announced or on its way.
    let queuedUpTo = text.emitted?.length ?? 0;
    // Stops the stream when a write is refused: the task ended, or another process holds it now.
    const refused = new AbortController();
    let flushing: Promise<void> = Promise.resolve();
    const flush = () => {
      if (received.length <= queuedUpTo || refused.signal.aborted) return flushing;
      const full = received;
      queuedUpTo = full.length;
      flushing = flushing.then(async () => {
        if (!refused.signal.aborted && !(await this.appendText(row.id, full, text, this.holdsLease)))
          refused.abort(new Released('write refused'));
      });
      return flushing;
    };
    const timer = setInterval(() => void flush(), 50);
    const both = AbortSignal.any([signal, refused.signal]);
    try {
      await this.opts.provider.stream(url, {
        signal: both,
        onEvent: (ev) => {
          if (ev.event === 'output') received += ev.data;
        },
      });
    } catch (err) {
      if (!both.aborted) log.warn({ err: String(err) }, 'output stream ended early; polling continues');
    } finally {
      clearInterval(timer);
      await flush();
    }
  }

  /**
   * Announce the part of `full` (the whole text so far, as the provider has it) beyond what
   * is stored, as one text_delta. A compare-and-set under the row lock: the stored length is
   * read there, so writers that see the same text (overlapping webhook deliveries, the stream
   * of a run whose lease lapsed) announce each part once and the deltas join to the text.
   * Returns false when the write is refused (the task ended, or `may` says it is not ours).
   */
  private async appendText(
    taskId: string,
    full: string,
    text: { emitted: string | null },
    may: MayWrite,
  ): Promise<boolean> {
    let refused = false;
    await this.opts.tasks.apply(taskId, async (cur, trx) => {
      if (TERMINAL.has(cur.status) || !may(cur)) {
        refused = true;
        return null;
      }
      const chars = Array.from(full);
      const stored = await this.opts.tasks.store.announcedLength(trx, taskId);
      if (chars.length <= stored) return null; // announced already, by another writer
      return { change: {}, events: [{ event: 'text_delta', payload: { delta: chars.slice(stored).join('') } }] };
    });
    if (refused) return false;
    if (full.length > (text.emitted?.length ?? 0)) text.emitted = full;
    return true;
  }

  /**
   * Bring the task up to the prediction: progress, streamed text (when not
   * streaming), and the end. Returns true when the task has ended.
   */
  private async sync(
    row: TaskRow,
    model: ModelSpec,
    prediction: Prediction,
    signal: AbortSignal,
    text: { emitted: string | null },
    streaming: boolean,
    may: MayWrite,
  ): Promise<boolean> {
    const { tasks } = this.opts;
    if (prediction.status === 'succeeded') {
      if (model.taskType === 'text_gen') {
        const final = normalizeOutput('text', prediction.output) ?? { text: '' };
        if (text.emitted !== null && final.text.startsWith(text.emitted) && final.text.length > text.emitted.length) {
          await this.appendText(row.id, final.text, text, may);
        }
        await this.finish(row.id, may, 'succeeded', null, final, prediction.output);
      } else {
        const theirs =
          normalizeOutput(model.taskType === 'image_gen' ? 'image' : 'video', prediction.output)?.urls ?? [];
        if (theirs.length === 0) {
          await this.finish(row.id, may, 'failed', {
            code: 'no_output',
            message: 'the provider reported success without an output file',
          });
          return true;
        }
        const ours = await this.opts.outputs.copy(row.id, theirs, this.opts.openOutput, signal);
        await this.finish(row.id, may, 'succeeded', null, { urls: ours }, { urls: theirs });
      }
      return true;
    }
    if (prediction.status === 'failed') {
      await this.finish(row.id, may, 'failed', {
        code: 'provider_failed',
        message: prediction.error ?? 'the prediction failed',
      });
      return true;
    }
    if (prediction.status === 'canceled' || prediction.status === 'aborted') {
      const cur = await tasks.find(row.id);
      if (cur?.cancel_requested)
        await this.finish(row.id, may, 'canceled', { code: 'canceled', message: 'canceled by the user' });
      else
        await this.finish(row.id, may, 'failed', {
          code: 'provider_canceled',
          message: `the prediction was ${prediction.status} by the provider`,
        });
      return true;
    }
    const progress = parseProgress(prediction.logs);
    if (model.taskType === 'text_gen' && !streaming && text.emitted !== null) {
      const sofar = normalizeOutput('text', prediction.output)?.text ?? '';
      if (sofar.startsWith(text.emitted) && sofar.length > text.emitted.length) {
        await this.appendText(row.id, sofar, text, may);
      }
    }
    if (progress.percent !== null) {
      const percent = Math.round(progress.percent);
      // Progress only rises: a second bar in the logs (a video's decode pass after its denoise
      // pass) starts again at 0 %, which a client would see as going backwards. A task follows one
      // prediction, so the stored progress is that prediction's.
      await tasks.apply(row.id, (cur) =>
        TERMINAL.has(cur.status) || !may(cur) || (cur.progress !== null && percent <= cur.progress)
          ? null
          : {
              change: { progress: percent },
              events: [
                {
                  event: 'progress',
                  payload: { progress: percent, ...(progress.message ? { message: progress.message } : {}) },
                },
              ],
            },
      );
    }
    return false;
  }

  /** End the task (unless it ended already, or `may` refuses the write). */
  private async finish(
    taskId: string,
    may: MayWrite,
    status: 'succeeded' | 'failed' | 'canceled',
    error: TaskError | null,
    output?: { urls: string[] } | { text: string },
    providerOutput?: unknown,
  ): Promise<void> {
    await this.opts.tasks.apply(taskId, (cur) =>
      TERMINAL.has(cur.status) || !may(cur)
        ? null
        : {
            change: {
              status,
              error,
              ...(output ? { output } : {}),
              ...(providerOutput !== undefined ? { provider_output: providerOutput } : {}),
            },
          },
    );
  }

  /** Apply a run's outcome: end the task, schedule a retry, or hand it back. */
  private async settle(row: TaskRow, outcome: RunOutcome, log: Logger): Promise<void> {
    const { tasks, retry } = this.opts;
    const now = this.opts.now().getTime();
    const release = { lease_owner: null, lease_expires_at: null };
    switch (outcome.kind) {
      case 'done':
        return;
      case 'fail':
        log.warn({ code: outcome.error.code }, 'task failed');
        await this.giveUp(row.id, outcome.error, log);
        return;
      case 'release':
        // Handed back (shutdown, lost lease): not a failed try, so the claim's try is given
        // back, as a snooze does. Also when another process has taken the task over (its own
        // claim counted its own try); only our lease is ours to clear.
        await tasks.apply(row.id, (cur) =>
          TERMINAL.has(cur.status)
            ? null
            : {
                change: { attempts: Math.max(0, cur.attempts - 1), ...(cur.lease_owner === this.owner ? release : {}) },
              },
        );
        return;
      case 'snooze':
        await tasks.apply(row.id, (cur) =>
          cur.lease_owner !== this.owner
            ? null
            : {
                change: {
                  ...release,
                  attempts: Math.max(0, cur.attempts - 1),
                  run_after: new Date(now + outcome.delayMs),
                },
              },
        );
        log.info({ delay_ms: outcome.delayMs, reason: outcome.reason }, 'task snoozed');
        return;
      case 'retry': {
        const cur = await tasks.find(row.id);
        if (!cur || TERMINAL.has(cur.status) || cur.lease_owner !== this.owner) return;
        if (cur.attempts >= Math.min(cur.max_attempts, retry.maxAttempts)) {
          await this.giveUp(
            row.id,
            { code: 'retries_exhausted', message: `gave up after ${cur.attempts} attempts: ${outcome.reason}` },
            log,
          );
          return;
        }
        const delay = backoffMs(retry, cur.attempts);
        await tasks.apply(row.id, (c) =>
          c.lease_owner !== this.owner ? null : { change: { ...release, run_after: new Date(now + delay) } },
        );
        log.info({ delay_ms: delay, attempts: cur.attempts, reason: outcome.reason }, 'task will be retried');
      }
    }
  }

  /**
   * Fail the task for good. Its prediction, if it has one, is canceled first (best effort;
   * canceling one that has ended changes nothing): no retry will follow it, so left running
   * it would only be billed, its output thrown away.
   */
  private async giveUp(taskId: string, error: TaskError, log: Logger): Promise<void> {
    const cur = await this.opts.tasks.find(taskId);
    if (!cur || TERMINAL.has(cur.status) || !this.holdsLease(cur)) return;
    if (cur.prediction_id) {
      log.info({ prediction_id: cur.prediction_id, code: error.code }, 'giving up; canceling the prediction');
      await this.opts.provider
        .cancel(cur.prediction_id)
        .catch((err) => log.warn({ err: String(err), prediction_id: cur.prediction_id }, 'cancel on giving up failed'));
    }
    await this.finish(taskId, this.holdsLease, 'failed', error);
  }

  private async renewLeases(): Promise<void> {
    if (this.running.size === 0) return;
    const ids = [...this.running.keys()];
    try {
      const renewed = await this.opts.tasks.store.renewLeases({
        ids,
        owner: this.owner,
        until: new Date(this.opts.now().getTime() + this.opts.leaseMs),
      });
      const kept = new Set(renewed);
      for (const id of ids) {
        const r = this.running.get(id);
        // Ended meanwhile (lease cleared by a terminal status) or taken by another process.
        if (r && !kept.has(id)) {
          const cur = await this.opts.tasks.find(id);
          if (cur && !TERMINAL.has(cur.status) && cur.lease_owner !== this.owner)
            r.abort.abort(new Released('lease lost'));
        }
      }
    } catch (err) {
      this.opts.logger.warn({ err }, 'lease renewal failed');
    }
  }
}
