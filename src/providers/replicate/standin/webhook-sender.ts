import { randomBytes } from 'node:crypto';
import { setMaxListeners } from 'node:events';
import { Agent, request } from 'undici';
import { signWebhook } from '../webhooks';
import type { StandinClock } from './clock';
import type { Faults } from './faults';
import { newId, type SimPrediction } from './simulation';

/** One attempt at delivering one webhook message, as recorded for assertions. */
export interface WebhookDelivery {
  webhookId: string;
  predictionId: string;
  event: 'start' | 'output' | 'logs' | 'completed';
  /** 1 for the first try; retries of a terminal message count up with the same webhookId. */
  attempt: number;
  url: string;
  /** Simulated time of the attempt. */
  at: number;
  /** Simulated time of the event the message reports (the throttle applies to this). */
  eventAt: number;
  headers: Record<string, string>;
  body: string;
  /** The receiver's status, or null if the connection failed (then `error` says why). */
  status: number | null;
  error: string | null;
}

interface Tracking {
  started: boolean;
  lastOutput: string | null;
  lastOutputAt: number;
  lastLogs: string | null;
  lastLogsAt: number;
  completed: boolean;
  chain: Promise<void>;
}

const THROTTLE_MS = 500;

/**
 * Sends signed webhook deliveries as predictions move: `start` once, `output` / `logs` at most
 * every 500 ms (never retried), `completed` once with retries on failure (exponential, in
 * simulated time). Deliveries of one prediction go out in order.
 */
export class WebhookSender {
  readonly deliveries: WebhookDelivery[] = [];
  private readonly tracking = new Map<string, Tracking>();
  private readonly pending = new Set<Promise<void>>();
  private readonly agent = new Agent({ connect: { timeout: 5000 }, headersTimeout: 10_000, bodyTimeout: 10_000 });
  private readonly abort = new AbortController();
  private readonly oldSecret = `whsec_${randomBytes(24).toString('base64')}`;

  constructor(
    private readonly opts: {
      clock: StandinClock;
      faults: Faults;
      secret: () => string;
      origin: () => string;
      retryDelaysMs: number[];
      timestamps: 'wall' | 'clock';
    },
  ) {
    // Every delivery in flight listens to it: thousands at once in load tests.
    setMaxListeners(0, this.abort.signal);
  }

  /** Looks at a prediction at the current time and queues whatever deliveries are due. */
  observe(pred: SimPrediction): void {
    const url = pred.extras.webhook;
    if (url === null) return;
    let tr = this.tracking.get(pred.id);
    if (!tr) {
      tr = {
        started: false,
        lastOutput: null,
        lastOutputAt: -Infinity,
        lastLogs: null,
        lastLogsAt: -Infinity,
        completed: false,
        chain: Promise.resolve(),
      };
      this.tracking.set(pred.id, tr);
    }
    if (tr.completed) return;
    const t = this.opts.clock.now();
    const filter = new Set(pred.extras.webhookEventsFilter ?? ['output', 'completed']);
    const state = pred.stateAt(t);
    if (state.startedAt !== null && !tr.started) {
      tr.started = true;
      if (filter.has('start')) this.enqueue(tr, pred, 'start', t);
    }
    if (state.completedAt === null) {
      const out = JSON.stringify(state.output);
      if (
        filter.has('output') &&
        state.output !== null &&
        out !== tr.lastOutput &&
        t - tr.lastOutputAt >= THROTTLE_MS
      ) {
        tr.lastOutput = out;
        tr.lastOutputAt = t;
        this.enqueue(tr, pred, 'output', t);
      }
      if (filter.has('logs') && state.logs && state.logs !== tr.lastLogs && t - tr.lastLogsAt >= THROTTLE_MS) {
        tr.lastLogs = state.logs;
        tr.lastLogsAt = t;
        this.enqueue(tr, pred, 'logs', t);
      }
      return;
    }
    tr.completed = true;
    if (filter.has('completed')) {
      const id = this.enqueue(tr, pred, 'completed', t);
      // A duplicate is the same message again (same webhook-id), as a receiver would see it.
      if (this.opts.faults.webhook.duplicateTerminal) this.enqueue(tr, pred, 'completed', t, id);
    }
  }

  /** Resolves when every queued delivery (including retries) has finished. */
  async settled(): Promise<void> {
    while (this.pending.size) await Promise.allSettled([...this.pending]);
  }

  async close(): Promise<void> {
    this.abort.abort(new Error('stand-in closed'));
    await Promise.allSettled([...this.pending]);
    await this.agent.close();
  }

  /** Stops tracking a prediction the stand-in forgot (its deliveries already went out). */
  forget(predictionId: string): void {
    this.tracking.delete(predictionId);
  }

  reset(): void {
    this.deliveries.length = 0;
    this.tracking.clear();
  }

  private enqueue(
    tr: Tracking,
    pred: SimPrediction,
    event: WebhookDelivery['event'],
    t: number,
    webhookId = `msg_${newId(27)}`,
  ): string {
    // The body is the prediction as it was when the event happened, whatever the queue's delay.
    const body = JSON.stringify(pred.view(t, this.opts.origin()));
    const p = (tr.chain = tr.chain.then(() => this.deliver(pred, event, webhookId, body, t)).catch(() => undefined));
    this.pending.add(p);
    void p.finally(() => this.pending.delete(p));
    return webhookId;
  }

  private async deliver(
    pred: SimPrediction,
    event: WebhookDelivery['event'],
    webhookId: string,
    body: string,
    eventAt: number,
  ): Promise<void> {
    const terminal = event === 'completed';
    const delays = this.opts.retryDelaysMs;
    for (let attempt = 1; ; attempt++) {
      if (this.abort.signal.aborted) return;
      const ok = await this.attempt(pred, event, webhookId, body, attempt, eventAt);
      if (ok || !terminal || attempt > delays.length) return;
      try {
        await this.opts.clock.waitUntil(this.opts.clock.now() + delays[attempt - 1]!, this.abort.signal);
      } catch {
        return;
      }
    }
  }

  private async attempt(
    pred: SimPrediction,
    event: WebhookDelivery['event'],
    webhookId: string,
    body: string,
    attempt: number,
    eventAt: number,
  ): Promise<boolean> {
    const url = pred.extras.webhook!;
    const mode = this.opts.faults.webhook.signature;
    let ts = Math.floor((this.opts.timestamps === 'clock' ? this.opts.clock.now() : Date.now()) / 1000);
    if (mode === 'stale') ts -= 600;
    const headers: Record<string, string> = {
      'content-type': 'application/json',
      'user-agent': 'Replicate-Webhooks/1.0 (pyre stand-in)',
    };
    headers['webhook-id'] = webhookId;
    headers['webhook-timestamp'] = String(ts);
    const good = signWebhook({ secret: this.opts.secret(), id: webhookId, timestamp: ts, body });
    if (mode === 'good' || mode === 'stale') headers['webhook-signature'] = good;
    else if (mode === 'bad')
      headers['webhook-signature'] = signWebhook({ secret: this.oldSecret, id: webhookId, timestamp: ts, body });
    else if (mode === 'rotated')
      headers['webhook-signature'] =
        `${signWebhook({ secret: this.oldSecret, id: webhookId, timestamp: ts, body })} ${good}`;
    const rec: WebhookDelivery = {
      webhookId,
      predictionId: pred.id,
      event,
      attempt,
      url,
      at: this.opts.clock.now(),
      eventAt,
      headers,
      body,
      status: null,
      error: null,
    };
    this.deliveries.push(rec);
    try {
      const res = await request(url, {
        method: 'POST',
        headers,
        body,
        dispatcher: this.agent,
        signal: this.abort.signal,
      });
      rec.status = res.statusCode;
      await res.body.dump();
      return res.statusCode >= 200 && res.statusCode < 300;
    } catch (err) {
      rec.error = (err as Error).message;
      return false;
    }
  }
}
