import type { Timeline } from './models';

/** Which kind of request a fault applies to. */
export type FaultOp = 'create' | 'get' | 'cancel' | 'list' | 'secret' | 'model' | 'account' | 'stream' | 'file' | 'any';

export type FaultAction =
  /** Answer with this status (429 gets a throttle body and `Retry-After`; others a problem body). */
  | { kind: 'status'; status: number; retryAfter?: number | 'date' | 'omit'; detail?: string }
  /** Create the prediction, then answer with this status (a 5xx after the work was done). */
  | { kind: 'create_then_status'; status: number }
  /** Create the prediction, then drop the connection without an answer. */
  | { kind: 'create_then_drop' }
  /** Drop the connection before doing anything. */
  | { kind: 'drop' }
  /** Never answer (until the client gives up or the stand-in closes). */
  | { kind: 'hang' }
  /** Wait this many real milliseconds, then answer normally. */
  | { kind: 'delay'; ms: number }
  /** Send status and headers now, the body after this many real milliseconds. */
  | { kind: 'slow_body'; ms: number }
  /** SSE only: drop the connection after this many events. */
  | { kind: 'stream_drop_after'; events: number }
  /** Cancel only: answer 200 with the prediction as it is, without canceling it (it runs on). */
  | { kind: 'cancel_ignored' };

export interface FaultRule {
  op: FaultOp;
  /** Only for requests about this model (creates, and reads of its predictions). */
  model?: string;
  /** How many matching requests it applies to (default 1). */
  times?: number;
  action: FaultAction;
}

/** What the next prediction (of a model, or of any) will end as. */
export type Outcome =
  | { type: 'succeed' }
  | { type: 'fail'; error?: string }
  /** Imagen's safety filter (a failed prediction with Replicate's E005 text). */
  | { type: 'safety' }
  /** Accepted with 201, then failed with "Prediction input failed validation: ...". */
  | { type: 'input_validation'; detail?: string };

export type SignatureMode = 'good' | 'bad' | 'missing' | 'stale' | 'rotated';

export interface WebhookFaults {
  /** How deliveries are signed (default `good`; `rotated` sends an old-key and the current signature). */
  signature: SignatureMode;
  /** Send each terminal delivery twice (same webhook-id), as Replicate sometimes does. */
  duplicateTerminal: boolean;
}

/** The switches a test (or the admin API) flips. All mutable; `reset()` restores defaults. */
export class Faults {
  rules: Array<Required<Pick<FaultRule, 'op' | 'times' | 'action'>> & { model?: string }> = [];
  outcomes: Array<{ model?: string; outcome: Outcome }> = [];
  /** Every create answers 402 Insufficient credit. */
  noCredit = false;
  /** Requests per rolling minute (simulated time) before 429s; Replicate's published limits. */
  rateLimits = { createPerMinute: 600, otherPerMinute: 3000 };
  /** Per-model timeline overrides. */
  timelines: Record<string, Partial<Timeline>> = {};
  webhook: WebhookFaults = { signature: 'good', duplicateTerminal: false };
  /** What a sync-mode create that ran out of time reports: the real state, or always `starting`. */
  syncTimeoutStatus: 'current' | 'starting' = 'current';

  /** Adds a one-shot (or `times`-shot) fault. */
  inject(rule: FaultRule): void {
    this.rules.push({ op: rule.op, model: rule.model, times: rule.times ?? 1, action: rule.action });
  }

  /** The next `times` matching requests answer 429 (Retry-After seconds, an HTTP date, or none). */
  throttle(op: FaultOp, times = 1, retryAfter: number | 'date' | 'omit' = 1): void {
    this.inject({ op, times, action: { kind: 'status', status: 429, retryAfter } });
  }

  /** The next prediction (of `model`, if given) ends this way. */
  nextOutcome(outcome: Outcome, model?: string): void {
    this.outcomes.push({ model, outcome });
  }

  /** Consumes and returns the first rule matching this request, if any. */
  take(op: FaultOp, model: string | undefined, allowed?: (a: FaultAction) => boolean): FaultAction | null {
    const i = this.rules.findIndex(
      (r) =>
        (r.op === op || r.op === 'any') &&
        (r.model === undefined || r.model === model) &&
        (!allowed || allowed(r.action)),
    );
    if (i < 0) return null;
    const rule = this.rules[i]!;
    rule.times--;
    if (rule.times <= 0) this.rules.splice(i, 1);
    return rule.action;
  }

  takeOutcome(model: string): Outcome {
    const i = this.outcomes.findIndex((o) => o.model === undefined || o.model === model);
    if (i < 0) return { type: 'succeed' };
    return this.outcomes.splice(i, 1)[0]!.outcome;
  }

  /** Merges a JSON patch (from the admin API) into the switches. */
  apply(
    patch: Partial<Pick<Faults, 'noCredit' | 'rateLimits' | 'timelines' | 'syncTimeoutStatus'>> & {
      webhook?: Partial<WebhookFaults>;
    },
  ): void {
    if (patch.noCredit !== undefined) this.noCredit = patch.noCredit;
    if (patch.rateLimits) this.rateLimits = { ...this.rateLimits, ...patch.rateLimits };
    if (patch.timelines) {
      for (const [m, t] of Object.entries(patch.timelines)) checkTimeline(m, t);
      for (const [m, t] of Object.entries(patch.timelines)) this.timelines[m] = { ...this.timelines[m], ...t };
    }
    if (patch.syncTimeoutStatus) this.syncTimeoutStatus = patch.syncTimeoutStatus;
    if (patch.webhook) this.webhook = { ...this.webhook, ...patch.webhook };
  }

  reset(): void {
    this.rules = [];
    this.outcomes = [];
    this.noCredit = false;
    this.rateLimits = { createPerMinute: 600, otherPerMinute: 3000 };
    this.timelines = {};
    this.webhook = { signature: 'good', duplicateTerminal: false };
    this.syncTimeoutStatus = 'current';
  }
}

/** The most tokens a reply may have (a long answer, not a memory test). */
const MAX_TOKENS = 1_000_000;

/** Refuses a timeline override the simulation cannot follow; the message names the field. */
function checkTimeline(model: string, t: Partial<Timeline>): void {
  if (t.tokens !== undefined && !(Number.isInteger(t.tokens) && t.tokens >= 1 && t.tokens <= MAX_TOKENS))
    throw new RangeError(
      `timelines["${model}"].tokens must be an integer from 1 to ${MAX_TOKENS}, got ${JSON.stringify(t.tokens)}`,
    );
}
