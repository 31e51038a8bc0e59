import { randomBytes } from 'node:crypto';
import { outputAssets, type OutputAsset } from './assets';
import type { Outcome } from './faults';
import type { StandinModel, Timeline } from './models';

/**
 * One simulated prediction. Its state is a pure function of the clock: given when it was created,
 * its plan (timeline, outcome) and when (if ever) it was canceled, `stateAt(t)` says what
 * Replicate would report at time t. Stream events are appended as time is observed to pass.
 */

export type SimStatus = 'starting' | 'processing' | 'succeeded' | 'failed' | 'canceled' | 'aborted';

export interface SimEvent {
  event: 'output' | 'logs' | 'error' | 'done';
  id: string;
  data: string;
  /** Wall-clock time (ms) at which the stand-in emitted it (benchmarks measure lag from here). */
  emittedAt: number;
}

export interface SimPlan extends Required<Omit<Timeline, 'tokens'>> {
  outcome: Outcome;
  /** Error text if the outcome is a failure. */
  error: string | null;
  tokens: string[];
  file: OutputAsset | null;
}

export interface SimState {
  status: SimStatus;
  startedAt: number | null;
  completedAt: number | null;
  /** Progress through processing, 0..1 (at the end for terminal states). */
  fraction: number;
  logs: string | null;
  output: unknown;
  dataRemoved: boolean;
}

const ALPHABET = 'abcdefghijklmnopqrstuvwxyz0123456789';

/** A 26-character lowercase id like Replicate's (`azaq55dbukgxg6kubr4k6g3pby`). */
export function newId(len = 26): string {
  const bytes = randomBytes(len);
  let s = '';
  for (const b of bytes) s += ALPHABET[b % ALPHABET.length];
  return s;
}

export const SAFETY_ERROR =
  'The input or output was flagged as sensitive. Please try again with different inputs. (E005)';

/** Filler that lengthens a reply to the `tokens` a timeline asks for. */
const MORE =
  ' It goes on, as long answers do, one token after another, each arriving a little after the last, so the gateway streams it as it comes.';

/**
 * A plausible reply, split into token-sized pieces (some carry newlines, for multi-line SSE data).
 * `count`: exactly that many tokens (the reply, then filler, cut to length).
 */
function makeTokens(model: StandinModel, input: Record<string, unknown>, count?: number): string[] {
  let prompt = typeof input.prompt === 'string' ? input.prompt : '';
  if (!prompt && Array.isArray(input.messages)) {
    const last = input.messages[input.messages.length - 1] as { content?: unknown } | undefined;
    if (typeof last?.content === 'string') prompt = last.content;
  }
  prompt = prompt.replace(/\s+/g, ' ').trim();
  if (prompt.length > 80) prompt = `${prompt.slice(0, 77)}...`;
  const text =
    `This is the pyre stand-in answering as ${model.ref}.\n\n` +
    `You asked: "${prompt}"\n\n` +
    'The reply arrives token by token, the way the real model streams it, so the gateway can show it as it comes.';
  const split = (t: string) => t.match(/\s*[^\s]{1,6}|\s+/g) ?? [t];
  const tokens = split(text);
  if (count === undefined) return tokens;
  const more = split(MORE);
  for (let i = 0; tokens.length < count; i++) tokens.push(more[i % more.length]!);
  return tokens.slice(0, count);
}

const PARTIALS = ['', '▏', '▎', '▍', '▌', '▋', '▊', '▉'];

/** One tqdm line, e.g. ` 60%|██████    | 30/50 [00:01<00:01, 17.19it/s]`. */
function tqdmLine(i: number, n: number): string {
  const frac = n === 0 ? 1 : i / n;
  const pct = Math.floor(frac * 100);
  const eighths = Math.floor(frac * 80);
  let bar = '█'.repeat(Math.floor(eighths / 8)) + PARTIALS[eighths % 8]!;
  bar = bar.padEnd(10, ' ').slice(0, 10);
  const rate = 4.9;
  const fmt = (s: number) =>
    `${String(Math.floor(s / 60)).padStart(2, '0')}:${String(Math.floor(s % 60)).padStart(2, '0')}`;
  const elapsed = i / rate;
  const left = (n - i) / rate;
  return `${String(pct).padStart(3, ' ')}%|${bar}| ${i}/${n} [${fmt(elapsed)}<${i === 0 ? '?' : fmt(left)}, ${i === 0 ? '?' : rate.toFixed(2)}it/s]`;
}

export class SimPrediction {
  readonly id = newId();
  readonly streamToken = newId(40);
  readonly fileToken = newId(32);
  readonly events: SimEvent[] = [];
  canceledAt: number | null = null;
  /** Set by the server: called when new stream events were appended. */
  readonly listeners = new Set<() => void>();
  private emittedTokens = 0;
  private emittedLogLines = 0;
  private ended = false;

  constructor(
    readonly model: StandinModel,
    readonly input: Record<string, unknown>,
    readonly createdAt: number,
    readonly plan: SimPlan,
    readonly extras: {
      webhook: string | null;
      webhookEventsFilter: string[] | null;
      deadlineAt: number | null;
      dataTtlMs: number;
      seq: number;
      /**
       * Wall-clock time of creation. Reported timestamps are this plus simulated time since
       * creation, so `created_at` agrees with the caller's clock even when the simulation's
       * clock is virtual (a gateway's `findCreated(req, since)` compares the two).
       */
      createdWall: number;
    },
  ) {}

  get startAt(): number {
    return this.createdAt + this.plan.queueMs;
  }

  /** When and how it ends, given what is known now (a later cancel can only make it earlier). */
  terminal(): { at: number; status: SimStatus } {
    const startAt = this.startAt;
    const natural = startAt + this.plan.processingMs;
    let end: { at: number; status: SimStatus } = {
      at: natural,
      status: this.plan.error === null ? 'succeeded' : 'failed',
    };
    const d = this.extras.deadlineAt;
    if (d !== null && d < end.at) end = { at: d, status: d < startAt ? 'aborted' : 'canceled' };
    if (this.canceledAt !== null && this.canceledAt < end.at) end = { at: this.canceledAt, status: 'canceled' };
    return end;
  }

  private fractionAt(t: number): number {
    if (t < this.startAt) return 0;
    return this.plan.processingMs <= 0 ? 1 : Math.min(1, (t - this.startAt) / this.plan.processingMs);
  }

  private logLines(fraction: number, status: SimStatus): string[] {
    if (status === 'starting' || status === 'aborted') return [];
    const m = this.model;
    const lines = [...m.prelude(this.input)];
    const n = m.steps;
    if (m.progress === 'one-bar') {
      const k = Math.min(n, Math.floor(fraction * n));
      for (let i = 0; i <= k; i++) lines.push(tqdmLine(i, n));
    } else if (m.progress === 'two-bars') {
      // The first bar fills by 55 %, sits at 100 % for a while, then a second bar starts at 0 %.
      const end1 = 0.55;
      const split = 0.6;
      const k1 = Math.min(n, Math.floor((Math.min(fraction, end1) / end1) * n));
      for (let i = 0; i <= k1; i++) lines.push(tqdmLine(i, n));
      if (fraction >= split) {
        const n2 = Math.max(1, Math.ceil(n / 3));
        lines.push('Decoding frames...');
        const k2 = Math.min(n2, Math.floor(((fraction - split) / (1 - split)) * n2));
        for (let i = 0; i <= k2; i++) lines.push(tqdmLine(i, n2));
      }
    }
    if (status === 'succeeded') lines.push(...m.epilogue(this.input, this.plan.tokens.length));
    return lines;
  }

  private tokensAt(fraction: number, status: SimStatus): number {
    if (status === 'succeeded') return this.plan.tokens.length;
    if (status === 'starting' || status === 'aborted') return 0;
    return Math.floor(fraction * this.plan.tokens.length);
  }

  stateAt(t: number): SimState {
    const end = this.terminal();
    let status: SimStatus;
    if (t >= end.at) status = end.status;
    else status = t < this.startAt ? 'starting' : 'processing';
    const terminal = t >= end.at;
    const at = terminal ? end.at : t;
    const startedAt = at >= this.startAt && !(terminal && end.status === 'aborted') ? this.startAt : null;
    const fraction = this.fractionAt(at);
    const dataRemoved = terminal && t >= end.at + this.extras.dataTtlMs;
    let output: unknown = null;
    const lines = this.logLines(fraction, status);
    if (this.model.kind === 'text') {
      const n = this.tokensAt(fraction, status);
      output = n > 0 ? this.plan.tokens.slice(0, n) : null;
    } else if (this.plan.file && this.plan.error === null) {
      const ready =
        status === 'succeeded' ||
        (status === 'processing' && t >= end.at - this.plan.outputEarlyMs && end.status === 'succeeded');
      output = ready ? this.fileUrlPath() : null;
    }
    return {
      status,
      startedAt: startedAt === null ? null : Math.min(startedAt, terminal ? end.at : startedAt),
      completedAt: terminal ? end.at : null,
      fraction,
      logs: dataRemoved ? null : lines.length ? `${lines.join('\n')}\n` : '',
      output: dataRemoved ? null : output,
      dataRemoved,
    };
  }

  /** Path of the output file on the stand-in (the server prefixes its origin). */
  fileUrlPath(): string {
    return `/delivery/${this.fileToken}/${this.plan.file?.name ?? 'output'}`;
  }

  /** Appends stream events up to time t; returns true if any were added. */
  advanceEvents(t: number): boolean {
    if (this.ended || this.model.kind !== 'text') return false;
    const s = this.stateAt(t);
    const before = this.events.length;
    const endLines = this.logLines(s.fraction, s.status === 'succeeded' ? 'processing' : s.status);
    for (; this.emittedLogLines < endLines.length; this.emittedLogLines++)
      this.push('logs', endLines[this.emittedLogLines]!);
    const n = this.tokensAt(s.fraction, s.status);
    for (; this.emittedTokens < n; this.emittedTokens++) this.push('output', this.plan.tokens[this.emittedTokens]!);
    if (s.completedAt !== null) {
      if (s.status === 'succeeded') {
        const all = this.logLines(1, 'succeeded');
        for (; this.emittedLogLines < all.length; this.emittedLogLines++) this.push('logs', all[this.emittedLogLines]!);
        this.push('done', '{}');
      } else if (s.status === 'failed') {
        this.push('error', JSON.stringify({ detail: this.plan.error }));
        this.push('done', JSON.stringify({ reason: 'error' }));
      } else {
        this.push('done', JSON.stringify({ reason: 'canceled' }));
      }
      this.ended = true;
    }
    return this.events.length > before;
  }

  get streamEnded(): boolean {
    return this.ended;
  }

  private push(event: SimEvent['event'], data: string): void {
    this.events.push({
      event,
      id: `${Math.floor(this.extras.createdWall / 1000)}:${this.events.length}`,
      data,
      emittedAt: Date.now(),
    });
  }

  /** The prediction JSON as GET /v1/predictions/{id} returns it at time t. */
  view(t: number, origin: string): Record<string, unknown> {
    const s = this.stateAt(t);
    const iso = (ms: number | null) =>
      ms === null ? null : new Date(this.extras.createdWall + (ms - this.createdAt)).toISOString();
    const base = `${origin}/v1/predictions/${this.id}`;
    const urls: Record<string, string> = { cancel: `${base}/cancel`, get: base, web: `${origin}/p/${this.id}` };
    if (this.model.kind === 'text') urls.stream = `${origin}/v1/streams/${this.streamToken}`;
    const out: Record<string, unknown> = {
      id: this.id,
      model: this.model.ref,
      version: 'hidden',
      input: s.dataRemoved ? {} : this.input,
      logs: s.logs,
      output: typeof s.output === 'string' && s.output.startsWith('/') ? `${origin}${s.output}` : s.output,
      data_removed: s.dataRemoved,
      error: s.status === 'failed' ? this.plan.error : null,
      source: 'api',
      status: s.status,
      created_at: iso(this.createdAt),
      started_at: iso(s.startedAt),
      completed_at: iso(s.completedAt),
      urls,
      metrics:
        s.completedAt === null
          ? {}
          : {
              predict_time: s.startedAt === null ? 0 : (s.completedAt - s.startedAt) / 1000,
              total_time: (s.completedAt - this.createdAt) / 1000,
              ...(this.model.kind === 'text' && s.status === 'succeeded'
                ? { input_token_count: 12, output_token_count: this.plan.tokens.length }
                : {}),
            },
    };
    if (this.extras.webhook !== null) {
      out.webhook = this.extras.webhook;
      out.webhook_events_filter = this.extras.webhookEventsFilter ?? ['output', 'completed'];
    }
    if (this.extras.deadlineAt !== null) out.deadline = iso(this.extras.deadlineAt);
    return out;
  }
}

/** Builds a prediction's plan from its model, timeline overrides and the scripted outcome. */
export function planFor(
  model: StandinModel,
  input: Record<string, unknown>,
  timeline: Timeline,
  outcome: Outcome,
): SimPlan {
  let error: string | null = null;
  const { tokens, ...times } = timeline;
  let t = { ...times, outputEarlyMs: timeline.outputEarlyMs ?? 0 };
  const late = model.lateCheck?.(input) ?? null;
  if (late !== null) {
    error = late;
    t = { ...t, processingMs: Math.min(t.processingMs, 50) };
  } else if (outcome.type === 'fail') {
    error = outcome.error ?? 'Prediction failed: the model raised an exception (stand-in)';
  } else if (outcome.type === 'safety') {
    error = SAFETY_ERROR;
  } else if (outcome.type === 'input_validation') {
    const rejected = '{"detail":[{"loc":["body","input"],"msg":"rejected by the model","type":"value_error"}]}';
    error = `Prediction input failed validation: ${outcome.detail ?? rejected}`;
    t = { ...t, processingMs: Math.min(t.processingMs, 50) };
  }
  const kind = model.file?.(input);
  return {
    ...t,
    outcome,
    error,
    tokens: model.kind === 'text' ? makeTokens(model, input, tokens) : [],
    file: kind ? outputAssets()[kind] : null,
  };
}
