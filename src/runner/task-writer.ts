import { normalizeOutput, parseProgress } from '../providers/progress';
import type { Prediction } from '../providers/types';
import type { OutputOpener, OutputStore } from '../storage/outputs';
import type { ModelSpec } from '../tasks/models';
import type { TaskService } from '../tasks/service';
import { TERMINAL, type TaskError, type TaskOutput } from '../tasks/task';
import { CANCELED_BY_USER, kindOf, outputsText, taskError } from '../tasks/events';
import { failedPrediction } from './failure';
import type { AnnouncedText, MayWrite } from './text-stream';

/** The error of a task the user canceled. */
export { CANCELED_BY_USER };

/** How a task ends. */
export interface TaskEnd {
  status: 'succeeded' | 'failed' | 'canceled';
  error?: TaskError | null;
  output?: TaskOutput;
  providerOutput?: unknown;
  /** The provider's own words about a failure (operators only). */
  providerError?: string | null;
  /** Tokens used, when the provider reported them. */
  usage?: Prediction['usage'];
}

/** End a task (unless it ended already, or `may` refuses the write). */
export async function finishTask(tasks: TaskService, taskId: string, may: MayWrite, end: TaskEnd): Promise<void> {
  await tasks.apply(taskId, (cur) =>
    TERMINAL.has(cur.status) || !may(cur)
      ? null
      : {
          change: {
            status: end.status,
            error: end.error ?? null,
            ...(end.output ? { output: end.output } : {}),
            ...(end.providerOutput !== undefined ? { provider_output: end.providerOutput } : {}),
            ...(end.providerError ? { provider_error: end.providerError } : {}),
            ...(end.usage ? { usage: end.usage } : {}),
          },
        },
  );
}

export interface TaskWriterDeps {
  tasks: TaskService;
  outputs: OutputStore;
  /** Downloads provider output files (the Replicate client's openOutput). */
  openOutput: OutputOpener;
}

/**
 * Brings one task up to its prediction: progress, text, the end. Every write is checked under
 * the row lock by `may` (a run's: it still holds the lease; a webhook's: no run holds the task).
 */
export class TaskWriter {
  constructor(
    private readonly deps: TaskWriterDeps,
    private readonly task: { id: string; model: ModelSpec },
    private readonly may: MayWrite,
    /** A text task's announced text (null for other tasks). */
    private readonly text: AnnouncedText | null,
  ) {}

  /**
   * Write what `prediction` says. `streaming`: a stream writes the text, so polled text is left
   * to it until the end. Returns true when the task has ended.
   */
  async sync(p: { prediction: Prediction; streaming: boolean; signal: AbortSignal }): Promise<boolean> {
    const { prediction } = p;
    switch (prediction.status) {
      case 'succeeded':
        await this.succeeded(prediction, p.signal);
        return true;
      case 'failed':
        await this.finish({ status: 'failed', ...failedPrediction(prediction.error), usage: prediction.usage });
        return true;
      case 'canceled':
      case 'aborted':
        await this.ended(prediction.status);
        return true;
      default:
        if (this.text && !p.streaming) await this.text.extendTo(normalizeOutput('text', prediction.output)?.text ?? '');
        await this.progress(prediction);
        return false;
    }
  }

  /** End the task (unless it ended already, or `may` refuses the write). */
  finish(end: TaskEnd): Promise<void> {
    return finishTask(this.deps.tasks, this.task.id, this.may, end);
  }

  private async succeeded(prediction: Prediction, signal: AbortSignal): Promise<void> {
    const { taskType } = this.task.model;
    if (outputsText(taskType)) {
      const final = normalizeOutput('text', prediction.output) ?? { text: '' };
      // The deltas the stream (or polling) missed, so that they join to the final text.
      await this.text?.extendTo(final.text);
      return this.finish({
        status: 'succeeded',
        output: final,
        providerOutput: prediction.output,
        usage: prediction.usage,
      });
    }
    const normalized = normalizeOutput(kindOf(taskType).kind, prediction.output);
    const theirs = normalized && 'urls' in normalized ? normalized.urls : [];
    if (theirs.length === 0) return this.finish({ status: 'failed', error: taskError('no_output') });
    const ours = await this.deps.outputs.copy(this.task.id, theirs, this.deps.openOutput, signal);
    await this.finish({ status: 'succeeded', output: { urls: ours }, providerOutput: { urls: theirs } });
  }

  /** The prediction was canceled or aborted: by the user's cancel, or by the provider. */
  private async ended(status: 'canceled' | 'aborted'): Promise<void> {
    const cur = await this.deps.tasks.find(this.task.id);
    if (cur?.cancel_requested) return this.finish({ status: 'canceled', error: CANCELED_BY_USER });
    await this.finish({
      status: 'failed',
      error: taskError('provider_canceled'),
      providerError: `the prediction was ${status} by the provider`,
    });
  }

  /**
   * Progress only rises: a second bar in the logs (a video's decode pass after its denoise pass)
   * starts again at 0 %, which a client would see as going backwards. A task follows one
   * prediction, so the stored progress is that prediction's.
   */
  private async progress(prediction: Prediction): Promise<void> {
    const progress = parseProgress(prediction.logs);
    if (progress.percent === null) return;
    const percent = Math.round(progress.percent);
    await this.deps.tasks.apply(this.task.id, (cur) =>
      TERMINAL.has(cur.status) || !this.may(cur) || (cur.progress !== null && percent <= cur.progress)
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
}
