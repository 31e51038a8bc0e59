import { randomBytes } from 'node:crypto';
import http, { type IncomingMessage, type ServerResponse } from 'node:http';
import type { AddressInfo, Socket } from 'node:net';
import type { Logger } from '../../../log';
import { formatSseEvent } from '../sse';
import { RealClock, VirtualClock, type StandinClock } from './clock';
import { Faults, type FaultAction, type FaultOp, type FaultRule, type Outcome } from './faults';
import {
  DEMO_TIMELINES,
  inputJsonSchema,
  STANDIN_MODELS,
  validateInput,
  type InvalidField,
  type StandinModel,
  type Timeline,
} from './models';
import { planFor, SimPrediction } from './simulation';
import { WebhookSender, type WebhookDelivery } from './webhook-sender';

/**
 * A local Replicate: a real HTTP server speaking the prediction API (reference §G), its
 * predictions moving along scripted timelines on a clock a test controls, with switches for
 * every failure the gateway must survive. Every request it receives is recorded.
 */

export type StandinPreset = 'realistic' | 'demo';

export interface StandinOptions {
  /** 0 (default) picks a free port. */
  port?: number;
  host?: string;
  /** The API token it accepts (default `r8_standin_test_token`). */
  token?: string;
  /** A second accepted token whose creates get 402 Insufficient credit. */
  noCreditToken?: string;
  webhookSecret?: string;
  /** `virtual` (default, except for the demo preset), real time at a speed, or your own clock. */
  clock?: 'virtual' | { speed: number } | StandinClock;
  /** `realistic`: timelines of the order of the real models; `demo`: a few seconds each, real time. */
  preset?: StandinPreset;
  /** Outputs, inputs and logs are removed this long after completion (default one hour). */
  dataTtlMs?: number;
  /** GET /v1/predictions page size (default 100, as Replicate). */
  listPageSize?: number;
  /** Reject input keys a model does not declare (default true; stricter than Replicate). */
  strictInputKeys?: boolean;
  /** Delays (simulated ms) between tries of a terminal webhook (default about a minute in all). */
  webhookRetryDelaysMs?: number[];
  /** Sign webhooks with wall time (default) or the simulated clock's time. */
  webhookTimestamps?: 'wall' | 'clock';
  logger?: Logger;
}

export interface RecordedRequest {
  seq: number;
  /** Simulated time it arrived. */
  at: number;
  method: string;
  /** Path with query string. */
  path: string;
  op: FaultOp | 'admin' | 'unknown';
  /** Headers as received, lower-case, without `authorization`. */
  headers: Record<string, string | string[] | undefined>;
  /** Parsed JSON if it was JSON, else the text, else null. */
  body: unknown;
  /** The status answered (null if the connection was dropped or is still hanging). */
  status: number | null;
  /** The fault that was applied, if one was. */
  fault: FaultAction['kind'] | null;
  /** For creates: the id of the prediction made (also when the answer was a fault). */
  predictionId?: string;
}

export interface Standin {
  /** API base including `/v1`, e.g. `http://127.0.0.1:41234/v1`. */
  url: string;
  origin: string;
  port: number;
  token: string;
  webhookSecret: string;
  clock: StandinClock;
  faults: Faults;
  /** Every request received, in order (admin requests excluded). Live array. */
  requests: RecordedRequest[];
  /** Every webhook delivery attempt. Live array. */
  webhookDeliveries: WebhookDelivery[];
  predictions: Map<string, SimPrediction>;
  /** Recorded create requests (POST .../predictions). */
  creates(): RecordedRequest[];
  /** The prediction JSON as GET would return it now. */
  prediction(id: string): Record<string, unknown> | null;
  /** Moves a virtual clock forward (throws with a real clock). */
  advance(ms: number, opts?: { stepMs?: number }): Promise<void>;
  /** Resolves when all queued webhook deliveries (and retries) are done. */
  webhooksSettled(): Promise<void>;
  /** Forgets predictions, requests, deliveries and faults. */
  reset(): void;
  close(): Promise<void>;
}

const TOP_LEVEL_KEYS = new Set(['input', 'webhook', 'webhook_events_filter', 'webhook_completed', 'stream']);
const WEBHOOK_EVENTS = ['start', 'output', 'logs', 'completed'];

interface Answer {
  status: number;
  body: unknown;
  headers?: Record<string, string>;
  problem?: boolean;
}

function problem(status: number, detail: string, title?: string, extra: Record<string, unknown> = {}): Answer {
  const body: Record<string, unknown> = {};
  if (title !== undefined) body.title = title;
  body.detail = detail;
  body.status = status;
  Object.assign(body, extra);
  return { status, body, problem: true };
}

const NOT_FOUND = () => problem(404, 'The requested resource could not be found.');

function validationFailed(fields: InvalidField[]): Answer {
  return problem(422, fields.map((f) => `- ${f.field}: ${f.description}\n`).join(''), 'Input validation failed', {
    invalid_fields: fields,
  });
}

/** Go-style duration (`90s`, `5m`, `1h30m45s`, `500ms`) in milliseconds, or null. */
export function parseGoDuration(s: string): number | null {
  const re = /(\d+(?:\.\d+)?)(ms|h|m|s)/gy;
  let total = 0;
  let m: RegExpExecArray | null;
  let pos = 0;
  const str = s.trim();
  if (str === '') return null;
  while ((m = re.exec(str))) {
    const n = Number(m[1]);
    total += m[2] === 'h' ? n * 3_600_000 : m[2] === 'm' ? n * 60_000 : m[2] === 's' ? n * 1000 : n;
    pos = re.lastIndex;
  }
  return pos === str.length ? total : null;
}

async function readBody(req: IncomingMessage): Promise<Buffer> {
  const chunks: Buffer[] = [];
  for await (const c of req) chunks.push(c as Buffer);
  return Buffer.concat(chunks);
}

const sleepReal = (ms: number) => new Promise<void>((r) => setTimeout(r, ms).unref());

export async function startStandin(opts: StandinOptions = {}): Promise<Standin> {
  const preset = opts.preset ?? 'realistic';
  const token = opts.token ?? 'r8_standin_test_token';
  let webhookSecret = opts.webhookSecret ?? `whsec_${randomBytes(24).toString('base64')}`;
  const clockOpt = opts.clock ?? (preset === 'demo' ? { speed: 1 } : 'virtual');
  const clock: StandinClock =
    clockOpt === 'virtual' ? new VirtualClock() : 'now' in clockOpt ? clockOpt : new RealClock(clockOpt.speed);
  const ownsClock = !(typeof clockOpt === 'object' && 'now' in clockOpt);
  const faults = new Faults();
  const dataTtlMs = opts.dataTtlMs ?? 3_600_000;
  const pageSize = opts.listPageSize ?? 100;
  const log = opts.logger;

  const requests: RecordedRequest[] = [];
  const predictions = new Map<string, SimPrediction>();
  const byStream = new Map<string, SimPrediction>();
  const byFile = new Map<string, SimPrediction>();
  const active = new Set<SimPrediction>();
  const budgets = { create: [] as number[], other: [] as number[] };
  const sockets = new Set<Socket>();
  const closing = new AbortController();
  let seq = 0;
  let predSeq = 0;
  let origin = '';

  const webhooks = new WebhookSender({
    clock,
    faults,
    secret: () => webhookSecret,
    origin: () => origin,
    retryDelaysMs: opts.webhookRetryDelaysMs ?? [1000, 2000, 4000, 8000, 16000, 29000],
    timestamps: opts.webhookTimestamps ?? 'wall',
  });

  /** Brings a prediction's stream events and webhooks up to the clock's time. */
  function sync(p: SimPrediction): void {
    const added = p.advanceEvents(clock.now());
    webhooks.observe(p);
    if (added) for (const l of [...p.listeners]) l();
    if (p.stateAt(clock.now()).completedAt !== null && (p.model.kind !== 'text' || p.streamEnded)) active.delete(p);
  }
  const offTick = clock.onTick(() => {
    for (const p of [...active]) sync(p);
  });

  function timelineFor(model: StandinModel): Timeline {
    const base = preset === 'demo' ? (DEMO_TIMELINES[model.ref] ?? model.timeline) : model.timeline;
    return { ...base, ...faults.timelines[model.ref] };
  }

  function overBudget(kind: 'create' | 'other'): number | null {
    const now = clock.now();
    const list = budgets[kind];
    while (list.length && list[0]! <= now - 60_000) list.shift();
    const limit = kind === 'create' ? faults.rateLimits.createPerMinute : faults.rateLimits.otherPerMinute;
    if (list.length >= limit) return Math.max(1, Math.ceil((list[0]! + 60_000 - now) / 1000));
    list.push(now);
    return null;
  }

  function throttled(retryAfter: number | 'date' | 'omit' | undefined, detail?: string): Answer {
    const secs = typeof retryAfter === 'number' ? retryAfter : 1;
    const headers: Record<string, string> = {};
    if (retryAfter === 'date') headers['retry-after'] = new Date(Date.now() + 2000).toUTCString();
    else if (retryAfter !== 'omit') headers['retry-after'] = String(secs);
    return {
      status: 429,
      headers,
      body: { detail: detail ?? `Request was throttled. Your rate limit resets in ~${secs}s.`, status: 429 },
      problem: true,
    };
  }

  function route(method: string, path: string): { op: FaultOp | 'admin' | 'unknown'; params: string[] } {
    let m: RegExpExecArray | null;
    if (path.startsWith('/__admin')) return { op: 'admin', params: [] };
    if (method === 'POST' && (m = /^\/v1\/models\/([^/]+)\/([^/]+)\/predictions$/.exec(path)))
      return { op: 'create', params: [decodeURIComponent(m[1]!), decodeURIComponent(m[2]!)] };
    if (method === 'POST' && path === '/v1/predictions') return { op: 'create', params: [] };
    if (method === 'GET' && path === '/v1/predictions') return { op: 'list', params: [] };
    if (method === 'GET' && (m = /^\/v1\/predictions\/([^/]+)$/.exec(path))) return { op: 'get', params: [m[1]!] };
    if (method === 'POST' && (m = /^\/v1\/predictions\/([^/]+)\/cancel$/.exec(path)))
      return { op: 'cancel', params: [m[1]!] };
    if (method === 'GET' && path === '/v1/webhooks/default/secret') return { op: 'secret', params: [] };
    if (method === 'GET' && path === '/v1/account') return { op: 'account', params: [] };
    if (method === 'GET' && (m = /^\/v1\/models\/([^/]+)\/([^/]+)$/.exec(path)))
      return { op: 'model', params: [decodeURIComponent(m[1]!), decodeURIComponent(m[2]!)] };
    if (method === 'GET' && (m = /^\/v1\/streams\/([^/]+)$/.exec(path))) return { op: 'stream', params: [m[1]!] };
    if ((method === 'GET' || method === 'HEAD') && (m = /^\/delivery\/([^/]+)\/([^/]+)$/.exec(path)))
      return { op: 'file', params: [m[1]!, m[2]!] };
    return { op: 'unknown', params: [] };
  }

  function send(res: ServerResponse, rec: RecordedRequest | null, a: Answer, extra: { slowMs?: number } = {}): void {
    if (res.headersSent || res.destroyed) return;
    const body = a.body === undefined ? '' : JSON.stringify(a.body);
    const headers: Record<string, string> = {
      'content-type': a.problem ? 'application/problem+json' : 'application/json; charset=utf-8',
      'content-length': String(Buffer.byteLength(body)),
      ...a.headers,
    };
    if (rec && rec.op !== 'admin') {
      const kind = rec.op === 'create' ? 'create' : 'other';
      const limit = kind === 'create' ? faults.rateLimits.createPerMinute : faults.rateLimits.otherPerMinute;
      headers['ratelimit-remaining'] = String(Math.max(0, limit - budgets[kind].length));
      headers['ratelimit-reset'] = '1';
    }
    if (rec) rec.status = a.status;
    res.writeHead(a.status, headers);
    if (extra.slowMs) {
      res.flushHeaders();
      setTimeout(() => res.end(body), extra.slowMs).unref();
    } else res.end(body);
  }

  function modelOf(owner: string, name: string): StandinModel | null {
    return STANDIN_MODELS[`${owner}/${name}`] ?? null;
  }

  // ---- handlers -------------------------------------------------------------------------

  async function create(
    req: IncomingMessage,
    res: ServerResponse,
    rec: RecordedRequest,
    params: string[],
    fault: FaultAction | null,
  ): Promise<void> {
    const raw = rec.body;
    if (raw === null || typeof raw !== 'object' || Array.isArray(raw))
      return send(res, rec, problem(400, 'The request body is not a valid JSON object.', 'Invalid JSON'));
    const body = raw as Record<string, unknown>;
    const viaVersion = params.length === 0;
    const allowed = viaVersion ? new Set([...TOP_LEVEL_KEYS, 'version']) : TOP_LEVEL_KEYS;
    const top: InvalidField[] = [];
    for (const k of Object.keys(body))
      if (!allowed.has(k))
        top.push({
          type: 'additional_property_not_allowed',
          field: '',
          description: `Additional property ${k} is not allowed`,
        });
    if (body.input === undefined) top.push({ type: 'required', field: '', description: 'input is required' });
    if (viaVersion && body.version === undefined)
      top.push({ type: 'required', field: '', description: 'version is required' });
    if (top.length) return send(res, rec, validationFailed(top));

    let model: StandinModel | null;
    if (viaVersion) {
      const v = String(body.version);
      const m = /^([^/:\s]+)\/([^/:\s]+)(?::([0-9a-f]{64}))?$/.exec(v);
      if (m) model = modelOf(m[1]!, m[2]!);
      else
        return send(
          res,
          rec,
          problem(
            422,
            "The specified version does not exist (or perhaps you don't have permission to use it?)",
            'Invalid version or not permitted',
          ),
        );
      if (!model) return send(res, rec, NOT_FOUND());
    } else {
      model = modelOf(params[0]!, params[1]!);
      if (!model) return send(res, rec, NOT_FOUND());
    }
    if (
      faults.noCredit ||
      (opts.noCreditToken !== undefined && req.headers.authorization === `Bearer ${opts.noCreditToken}`)
    ) {
      return send(
        res,
        rec,
        problem(
          402,
          'You have insufficient credit to run this model. Go to https://replicate.com/account/billing#billing to purchase credit. Once you purchase credit, please wait a few minutes before trying again.',
          'Insufficient credit',
        ),
      );
    }
    const fields = validateInput(model, body.input, { strictKeys: opts.strictInputKeys });
    let webhook: string | null = null;
    if (body.webhook !== undefined && body.webhook !== null) {
      try {
        const u = new URL(String(body.webhook));
        if (u.protocol !== 'https:' && u.protocol !== 'http:') throw new Error('scheme');
        webhook = u.toString();
      } catch {
        fields.push({ type: 'format', field: 'webhook', description: "Does not match format 'uri'" });
      }
    }
    let filter: string[] | null = null;
    if (body.webhook_events_filter !== undefined && body.webhook_events_filter !== null) {
      const f = body.webhook_events_filter;
      if (!Array.isArray(f))
        fields.push({
          type: 'invalid_type',
          field: 'webhook_events_filter',
          description: 'Invalid type. Expected: array, given: ' + typeof f,
        });
      else {
        f.forEach((e, i) => {
          if (!WEBHOOK_EVENTS.includes(e as string))
            fields.push({
              type: 'enum',
              field: `webhook_events_filter.${i}`,
              description: `webhook_events_filter.${i} must be one of the following: "start", "output", "logs", "completed"`,
            });
        });
        filter = f as string[];
      }
    }
    let deadlineAt: number | null = null;
    const cancelAfter = req.headers['cancel-after'];
    if (typeof cancelAfter === 'string') {
      const ms = parseGoDuration(cancelAfter);
      if (ms === null || ms <= 0)
        fields.push({
          type: 'format',
          field: 'Cancel-After',
          description: `Invalid duration ${JSON.stringify(cancelAfter)}`,
        });
      else deadlineAt = clock.now() + ms;
    }
    if (fields.length) return send(res, rec, validationFailed(fields));

    const input = body.input as Record<string, unknown>;
    const now = clock.now();
    // For people trying failure paths by hand (demo mode): `[[fail]]` or `[[unsafe]]` in the prompt.
    const marker = typeof input.prompt === 'string' ? /\[\[(fail|unsafe)\]\]/.exec(input.prompt)?.[1] : undefined;
    const outcome: Outcome =
      marker === 'fail' ? { type: 'fail' } : marker === 'unsafe' ? { type: 'safety' } : faults.takeOutcome(model.ref);
    const p = new SimPrediction(model, input, now, planFor(model, input, timelineFor(model), outcome), {
      webhook,
      webhookEventsFilter: filter,
      deadlineAt,
      dataTtlMs,
      seq: predSeq++,
      createdWall: Date.now(),
    });
    predictions.set(p.id, p);
    byStream.set(p.streamToken, p);
    byFile.set(p.fileToken, p);
    active.add(p);
    rec.predictionId = p.id;
    log?.debug({ id: p.id, model: model.ref }, 'stand-in: prediction created');
    sync(p);

    if (fault?.kind === 'create_then_drop') {
      res.socket?.destroy();
      return;
    }
    if (fault?.kind === 'create_then_status')
      return send(
        res,
        rec,
        problem(
          fault.status,
          'Internal server error (stand-in fault after creating the prediction)',
          'Internal Server Error',
        ),
      );

    const headers: Record<string, string> = {};
    const prefer = req.headers.prefer;
    if (typeof prefer === 'string') {
      const m = /^\s*wait(?:=(\d+))?\s*$/.exec(prefer);
      if (m) {
        const secs = m[1] ? Math.min(60, Math.max(1, Number(m[1]))) : 60;
        const until = now + secs * 1000;
        let timedOut = false;
        await new Promise<void>((resolve) => {
          const check = () => {
            sync(p);
            const s = p.stateAt(clock.now());
            const done = s.completedAt !== null || (model.kind !== 'text' && s.output !== null);
            if (done || clock.now() >= until || closing.signal.aborted || res.destroyed) {
              timedOut = !done;
              off();
              closing.signal.removeEventListener('abort', check);
              resolve();
            }
          };
          const off = clock.onTick(check);
          closing.signal.addEventListener('abort', check);
          check();
        });
        headers['preference-applied'] = prefer.trim();
        headers.location = `${origin}/v1/predictions/${p.id}`;
        const view = p.view(clock.now(), origin);
        if (timedOut && faults.syncTimeoutStatus === 'starting') {
          view.status = 'starting';
        }
        return send(
          res,
          rec,
          { status: 201, body: view, headers },
          { slowMs: fault?.kind === 'slow_body' ? fault.ms : undefined },
        );
      }
    }
    send(
      res,
      rec,
      { status: 201, body: p.view(now, origin), headers },
      { slowMs: fault?.kind === 'slow_body' ? fault.ms : undefined },
    );
  }

  function list(url: URL): Answer {
    const after = url.searchParams.get('created_after');
    const before = url.searchParams.get('created_before');
    const afterMs = after ? Date.parse(after) : NaN;
    const beforeMs = before ? Date.parse(before) : NaN;
    if ((after && Number.isNaN(afterMs)) || (before && Number.isNaN(beforeMs)))
      return problem(400, 'created_after / created_before must be ISO-8601 times', 'Bad request');
    const all = [...predictions.values()]
      .filter(
        (p) =>
          (Number.isNaN(afterMs) || p.extras.createdWall >= afterMs) &&
          (Number.isNaN(beforeMs) || p.extras.createdWall < beforeMs),
      )
      .sort((a, b) => b.extras.createdWall - a.extras.createdWall || b.extras.seq - a.extras.seq);
    const cursor = url.searchParams.get('cursor');
    const offset = cursor ? Number(Buffer.from(cursor, 'base64url').toString('utf8').replace(/^o=/, '')) || 0 : 0;
    const page = all.slice(offset, offset + pageSize);
    const link = (o: number) => {
      const q = new URLSearchParams(url.searchParams);
      q.set('cursor', Buffer.from(`o=${o}`, 'utf8').toString('base64url'));
      return `${origin}/v1/predictions?${q}`;
    };
    const now = clock.now();
    return {
      status: 200,
      body: {
        previous: offset > 0 ? link(Math.max(0, offset - pageSize)) : null,
        next: offset + pageSize < all.length ? link(offset + pageSize) : null,
        results: page.map((p) => p.view(now, origin)),
      },
    };
  }

  function stream(
    req: IncomingMessage,
    res: ServerResponse,
    rec: RecordedRequest,
    p: SimPrediction,
    fault: FaultAction | null,
  ): void {
    sync(p);
    const lastId = req.headers['last-event-id'];
    let next = 0;
    if (typeof lastId === 'string' && lastId !== '') {
      const i = p.events.findIndex((e) => e.id === lastId);
      if (i >= 0) next = i + 1;
    }
    rec.status = 200;
    res.writeHead(200, { 'content-type': 'text/event-stream', 'cache-control': 'no-store', connection: 'keep-alive' });
    res.write(': hi\n\n');
    let sentHere = 0;
    const dropAfter = fault?.kind === 'stream_drop_after' ? fault.events : Infinity;
    const flush = () => {
      while (next < p.events.length) {
        if (sentHere >= dropAfter) {
          cleanup();
          // Drop once what was written has left, so the client sees exactly `events` events.
          res.write('', () => res.socket?.destroy());
          return;
        }
        const ev = p.events[next++]!;
        res.write(formatSseEvent(ev));
        sentHere++;
        if (ev.event === 'done') {
          cleanup();
          res.end();
          return;
        }
      }
    };
    const ping = setInterval(() => res.write(': ping\n\n'), 10_000);
    ping.unref();
    const cleanup = () => {
      clearInterval(ping);
      p.listeners.delete(flush);
    };
    p.listeners.add(flush);
    res.on('close', cleanup);
    flush();
  }

  function file(
    req: IncomingMessage,
    res: ServerResponse,
    rec: RecordedRequest,
    params: string[],
    fault: FaultAction | null,
  ): void {
    const p = byFile.get(params[0]!);
    if (!p || !p.plan.file || p.plan.file.name !== params[1]) return send(res, rec, NOT_FOUND());
    const s = p.stateAt(clock.now());
    if (s.output === null || s.dataRemoved) return send(res, rec, NOT_FOUND());
    const f = p.plan.file;
    rec.status = 200;
    res.writeHead(200, {
      'content-type': f.contentType,
      'content-length': String(f.bytes.length),
      'cache-control': 'private, max-age=3600',
    });
    if (req.method === 'HEAD') return void res.end();
    if (fault?.kind === 'slow_body') setTimeout(() => res.end(f.bytes), fault.ms).unref();
    else res.end(f.bytes);
  }

  // ---- admin API --------------------------------------------------------------------------

  async function admin(method: string, url: URL, body: unknown): Promise<Answer> {
    const path = url.pathname.replace(/^\/__admin/, '') || '/';
    const b = (body && typeof body === 'object' ? body : {}) as Record<string, unknown>;
    if (method === 'GET' && path === '/requests') {
      const op = url.searchParams.get('op');
      return { status: 200, body: op ? requests.filter((r) => r.op === op) : requests };
    }
    if (method === 'DELETE' && path === '/requests') {
      requests.length = 0;
      return { status: 204, body: undefined };
    }
    if (method === 'GET' && path === '/clock')
      return { status: 200, body: { kind: clock.kind, now: clock.now(), iso: new Date(clock.now()).toISOString() } };
    if (method === 'POST' && path === '/clock/advance') {
      if (!(clock instanceof VirtualClock)) return problem(409, 'The clock is real time; it cannot be advanced');
      await clock.advance(Number(b.ms ?? 0), { stepMs: typeof b.stepMs === 'number' ? b.stepMs : undefined });
      return { status: 200, body: { now: clock.now() } };
    }
    if (method === 'GET' && path === '/faults') return { status: 200, body: { ...faults } };
    if (method === 'POST' && path === '/faults') {
      faults.apply(b as Parameters<Faults['apply']>[0]);
      return { status: 200, body: { ...faults } };
    }
    if (method === 'POST' && path === '/faults/inject') {
      faults.inject(b as unknown as FaultRule);
      return { status: 200, body: { rules: faults.rules } };
    }
    if (method === 'POST' && path === '/faults/outcome') {
      faults.nextOutcome(b.outcome as Outcome, typeof b.model === 'string' ? b.model : undefined);
      return { status: 200, body: { outcomes: faults.outcomes } };
    }
    if (method === 'GET' && path === '/predictions')
      return { status: 200, body: [...predictions.values()].map((p) => p.view(clock.now(), origin)) };
    if (method === 'GET' && path === '/webhooks') return { status: 200, body: webhooks.deliveries };
    if (method === 'POST' && path === '/webhook-secret/rotate') {
      webhookSecret = `whsec_${randomBytes(24).toString('base64')}`;
      return { status: 200, body: { key: webhookSecret } };
    }
    if (method === 'POST' && path === '/reset') {
      api.reset();
      return { status: 204, body: undefined };
    }
    return NOT_FOUND();
  }

  // ---- the server -------------------------------------------------------------------------

  async function handle(req: IncomingMessage, res: ServerResponse): Promise<void> {
    const url = new URL(req.url ?? '/', origin);
    const method = req.method ?? 'GET';
    const raw = await readBody(req);
    let body: unknown = null;
    if (raw.length) {
      const text = raw.toString('utf8');
      try {
        body = JSON.parse(text);
      } catch {
        body = text;
      }
    }
    const { op, params } = route(method, url.pathname);
    if (op === 'admin') {
      const a = await admin(method, url, body);
      return send(res, null, a);
    }
    const headers = { ...req.headers };
    delete headers.authorization;
    const rec: RecordedRequest = {
      seq: ++seq,
      at: clock.now(),
      method,
      path: url.pathname + url.search,
      op,
      headers,
      body,
      status: null,
      fault: null,
    };
    requests.push(rec);
    if (op === 'unknown') return send(res, rec, NOT_FOUND());

    if (op !== 'stream' && op !== 'file') {
      const auth = req.headers.authorization ?? '';
      const ok =
        auth === `Bearer ${token}` ||
        auth === `Token ${token}` ||
        (opts.noCreditToken !== undefined && auth === `Bearer ${opts.noCreditToken}`);
      if (!ok) return send(res, rec, problem(401, 'You did not pass a valid authentication token', 'Unauthenticated'));
    }

    let model: string | undefined;
    if (op === 'create')
      model = params.length
        ? `${params[0]}/${params[1]}`
        : typeof (body as { version?: unknown })?.version === 'string'
          ? String((body as { version: string }).version).split(':')[0]
          : undefined;
    else if (op === 'get' || op === 'cancel') model = predictions.get(params[0]!)?.model.ref;
    else if (op === 'stream') model = byStream.get(params[0]!)?.model.ref;

    const fault = faults.take(op, model, (a) =>
      a.kind === 'create_then_status' || a.kind === 'create_then_drop'
        ? op === 'create'
        : a.kind === 'stream_drop_after'
          ? op === 'stream'
          : a.kind === 'cancel_ignored'
            ? op === 'cancel'
            : true,
    );
    if (fault) {
      rec.fault = fault.kind;
      switch (fault.kind) {
        case 'drop':
          res.socket?.destroy();
          return;
        case 'hang':
          return; // the socket stays open until the client gives up or close() destroys it
        case 'delay':
          await sleepReal(fault.ms);
          break;
        case 'status':
          if (fault.status === 429) return send(res, rec, throttled(fault.retryAfter, fault.detail));
          return send(
            res,
            rec,
            problem(
              fault.status,
              fault.detail ?? `Stand-in injected HTTP ${fault.status}`,
              fault.status >= 500 ? 'Internal Server Error' : undefined,
            ),
          );
        default:
          break;
      }
    }

    if (op !== 'stream' && op !== 'file') {
      const retryAfter = overBudget(op === 'create' ? 'create' : 'other');
      if (retryAfter !== null) return send(res, rec, throttled(retryAfter));
    }
    const slowMs = fault?.kind === 'slow_body' ? fault.ms : undefined;

    switch (op) {
      case 'create':
        return create(req, res, rec, params, fault);
      case 'get':
      case 'cancel': {
        const p = predictions.get(params[0]!);
        if (!p) return send(res, rec, NOT_FOUND());
        sync(p);
        if (op === 'cancel' && fault?.kind !== 'cancel_ignored' && p.stateAt(clock.now()).completedAt === null) {
          p.canceledAt = clock.now();
          active.add(p);
          sync(p);
        }
        return send(res, rec, { status: 200, body: p.view(clock.now(), origin) }, { slowMs });
      }
      case 'list':
        return send(res, rec, list(url), { slowMs });
      case 'secret':
        return send(res, rec, { status: 200, body: { key: webhookSecret } }, { slowMs });
      case 'account':
        // Replicate's GET /v1/account: who the token belongs to (a cheap authenticated call).
        return send(
          res,
          rec,
          { status: 200, body: { type: 'organization', username: 'standin', name: 'Replicate stand-in' } },
          { slowMs },
        );
      case 'model': {
        const m = modelOf(params[0]!, params[1]!);
        if (!m) return send(res, rec, NOT_FOUND());
        return send(
          res,
          rec,
          {
            status: 200,
            body: {
              url: `${origin}/${m.ref}`,
              owner: params[0],
              name: params[1],
              description: m.description,
              visibility: 'public',
              is_official: true,
              run_count: 0,
              latest_version: {
                id: 'hidden',
                openapi_schema: { components: { schemas: { Input: inputJsonSchema(m) } } },
              },
            },
          },
          { slowMs },
        );
      }
      case 'stream': {
        const p = byStream.get(params[0]!);
        if (!p) return send(res, rec, NOT_FOUND());
        return stream(req, res, rec, p, fault);
      }
      case 'file':
        return file(req, res, rec, params, fault);
      default:
        return send(res, rec, NOT_FOUND());
    }
  }

  const server = http.createServer((req, res) => {
    handle(req, res).catch((err: unknown) => {
      log?.error({ err }, 'stand-in: handler failed');
      if (!res.headersSent)
        send(res, null, problem(500, `Stand-in error: ${(err as Error).message}`, 'Internal Server Error'));
      else res.destroy();
    });
  });
  server.keepAliveTimeout = 60_000;
  server.on('connection', (s: Socket) => {
    sockets.add(s);
    s.on('close', () => sockets.delete(s));
  });
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(opts.port ?? 0, opts.host ?? '127.0.0.1', () => resolve());
  });
  const addr = server.address() as AddressInfo;
  const host = addr.family === 'IPv6' ? `[${addr.address}]` : addr.address;
  origin = `http://${host === '0.0.0.0' ? '127.0.0.1' : host}:${addr.port}`;

  const api: Standin = {
    url: `${origin}/v1`,
    origin,
    port: addr.port,
    token,
    get webhookSecret() {
      return webhookSecret;
    },
    clock,
    faults,
    requests,
    webhookDeliveries: webhooks.deliveries,
    predictions,
    creates: () => requests.filter((r) => r.op === 'create'),
    prediction: (id) => predictions.get(id)?.view(clock.now(), origin) ?? null,
    advance: async (ms, o) => {
      if (!(clock instanceof VirtualClock)) throw new Error('advance() needs a virtual clock');
      await clock.advance(ms, o);
    },
    webhooksSettled: () => webhooks.settled(),
    reset: () => {
      requests.length = 0;
      predictions.clear();
      byStream.clear();
      byFile.clear();
      active.clear();
      budgets.create.length = 0;
      budgets.other.length = 0;
      faults.reset();
      webhooks.reset();
    },
    close: async () => {
      closing.abort();
      offTick();
      await webhooks.close();
      for (const s of sockets) s.destroy();
      await new Promise<void>((resolve) => server.close(() => resolve()));
      if (ownsClock) clock.stop();
    },
  };
  return api;
}
