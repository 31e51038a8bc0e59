import { randomBytes } from 'node:crypto';
import http, { type IncomingMessage, type ServerResponse } from 'node:http';
import type { AddressInfo, Socket } from 'node:net';
import type { Logger } from '../../../log';
import { formatSseEvent } from '../../http/sse';
import { NOT_FOUND, parseBody, problem, readBody, route, throttled, type Answer, type RouteOp } from './answers';
import { RealClock, VirtualClock, type StandinClock } from './clock';
import { checkCreate, modelOf, type CreateRequest } from './create-request';
import { Faults, type FaultAction, type FaultRule, type Outcome } from './faults';
import { DEMO_TIMELINES, inputJsonSchema, MINUTES_TIMELINES, type StandinModel, type Timeline } from './models';
import { planFor, SimPrediction } from './simulation';
import { WebhookSender, type WebhookDelivery } from './webhook-sender';

/**
 * A local Replicate: a real HTTP server speaking the prediction API (reference §G), its
 * predictions moving along scripted timelines on a clock a test controls, with switches for
 * every failure the gateway must survive. Every request it receives is recorded.
 */

export type StandinPreset = 'realistic' | 'demo' | 'minutes';

export interface StandinOptions {
  /** 0 (default) picks a free port. */
  port?: number;
  host?: string;
  /** The API token it accepts (default `r8_standin_test_token`). */
  token?: string;
  /** A second accepted token whose creates get 402 Insufficient credit. */
  noCreditToken?: string;
  webhookSecret?: string;
  /** `virtual` (default for the realistic preset), real time at a speed, or your own clock. */
  clock?: 'virtual' | { speed: number } | StandinClock;
  /**
   * `realistic`: timelines of the order of the real models; `demo`: a few seconds each, real time;
   * `minutes`: every prediction takes minutes, real time (load tests: thousands in flight).
   */
  preset?: StandinPreset;
  /** Outputs, inputs and logs are removed this long after completion (default one hour). */
  dataTtlMs?: number;
  /**
   * Bounds for a long-running stand-in (demo mode): a finished prediction is forgotten (GET
   * answers 404) `forgetAfterMs` after it ended, and only the last `maxRecorded` requests and
   * webhook deliveries are kept. Default: everything is kept (tests read it all).
   */
  retention?: { forgetAfterMs: number; maxRecorded: number };
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
  /** Wall-clock time (ms since the epoch) it arrived: evidence of a client's pacing in real time. */
  wallAt: number;
  method: string;
  /** Path with query string. */
  path: string;
  op: RouteOp;
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

/** Keeps the last `max` items of a live array (in place: callers hold the array). */
function trimToLast<T>(list: T[], max: number): void {
  if (list.length > max) list.splice(0, list.length - max);
}

const sleepReal = (ms: number) => new Promise<void>((r) => setTimeout(r, ms).unref());

/** Whether a fault rule's action applies to this operation (the create-, stream- and cancel-only ones). */
function faultFits(op: RouteOp, a: FaultAction): boolean {
  if (a.kind === 'create_then_status' || a.kind === 'create_then_drop') return op === 'create';
  if (a.kind === 'stream_drop_after') return op === 'stream';
  if (a.kind === 'cancel_ignored') return op === 'cancel';
  return true;
}

/** The answer body of GET /v1/models/{owner}/{name}. */
function modelView(origin: string, owner: string, name: string, m: StandinModel): Record<string, unknown> {
  return {
    url: `${origin}/${m.ref}`,
    owner,
    name,
    description: m.description,
    visibility: 'public',
    is_official: true,
    run_count: 0,
    latest_version: {
      id: 'hidden',
      openapi_schema: { components: { schemas: { Input: inputJsonSchema(m) } } },
    },
  };
}

/** One request being answered: what was received, and its record (null for admin requests). */
interface Exchange {
  req: IncomingMessage;
  res: ServerResponse;
  rec: RecordedRequest;
  url: URL;
  params: string[];
  fault: FaultAction | null;
}

/** The stand-in's state and handlers; `startStandin` listens with it and hands out its `Standin` view. */
class StandinServer {
  readonly requests: RecordedRequest[] = [];
  readonly predictions = new Map<string, SimPrediction>();
  readonly faults = new Faults();
  readonly clock: StandinClock;
  readonly webhooks: WebhookSender;
  readonly token: string;
  webhookSecret: string;
  origin = '';
  private readonly ownsClock: boolean;
  private readonly preset: StandinPreset;
  private readonly dataTtlMs: number;
  private readonly pageSize: number;
  private readonly log: Logger | undefined;
  private readonly byStream = new Map<string, SimPrediction>();
  private readonly byFile = new Map<string, SimPrediction>();
  private readonly active = new Set<SimPrediction>();
  private readonly budgets = { create: [] as number[], other: [] as number[] };
  private readonly sockets = new Set<Socket>();
  private readonly closing = new AbortController();
  private readonly offTick: () => void;
  private readonly server: http.Server;
  private seq = 0;
  private predSeq = 0;
  /** Simulated time of the last sweep of forgotten predictions. */
  private sweptAt = -Infinity;

  constructor(private readonly opts: StandinOptions) {
    this.preset = opts.preset ?? 'realistic';
    this.token = opts.token ?? 'r8_standin_test_token';
    this.webhookSecret = opts.webhookSecret ?? `whsec_${randomBytes(24).toString('base64')}`;
    const clockOpt = opts.clock ?? (this.preset === 'realistic' ? 'virtual' : { speed: 1 });
    this.clock =
      clockOpt === 'virtual' ? new VirtualClock() : 'now' in clockOpt ? clockOpt : new RealClock(clockOpt.speed);
    this.ownsClock = !(typeof clockOpt === 'object' && 'now' in clockOpt);
    this.dataTtlMs = opts.dataTtlMs ?? 3_600_000;
    this.pageSize = opts.listPageSize ?? 100;
    this.log = opts.logger;
    this.webhooks = new WebhookSender({
      clock: this.clock,
      faults: this.faults,
      secret: () => this.webhookSecret,
      origin: () => this.origin,
      retryDelaysMs: opts.webhookRetryDelaysMs ?? [1000, 2000, 4000, 8000, 16000, 29000],
      timestamps: opts.webhookTimestamps ?? 'wall',
    });
    this.offTick = this.clock.onTick(() => {
      for (const p of [...this.active]) this.sync(p);
      this.forgetOld();
    });
    this.server = http.createServer((req, res) => {
      this.handle(req, res).catch((err: unknown) => {
        this.log?.error({ err }, 'stand-in: handler failed');
        if (!res.headersSent)
          this.send(res, null, problem(500, `Stand-in error: ${(err as Error).message}`, 'Internal Server Error'));
        else res.destroy();
      });
    });
    this.server.keepAliveTimeout = 60_000;
    this.server.on('connection', (s: Socket) => {
      this.sockets.add(s);
      s.on('close', () => this.sockets.delete(s));
    });
  }

  async listen(): Promise<AddressInfo> {
    await new Promise<void>((resolve, reject) => {
      this.server.once('error', reject);
      this.server.listen(this.opts.port ?? 0, this.opts.host ?? '127.0.0.1', () => resolve());
    });
    const addr = this.server.address() as AddressInfo;
    const host = addr.family === 'IPv6' ? `[${addr.address}]` : addr.address;
    this.origin = `http://${host === '0.0.0.0' ? '127.0.0.1' : host}:${addr.port}`;
    return addr;
  }

  reset(): void {
    this.requests.length = 0;
    this.predictions.clear();
    this.byStream.clear();
    this.byFile.clear();
    this.active.clear();
    this.budgets.create.length = 0;
    this.budgets.other.length = 0;
    this.faults.reset();
    this.webhooks.reset();
  }

  async close(): Promise<void> {
    this.closing.abort();
    this.offTick();
    await this.webhooks.close();
    for (const s of this.sockets) s.destroy();
    await new Promise<void>((resolve) => this.server.close(() => resolve()));
    if (this.ownsClock) this.clock.stop();
  }

  /**
   * With `retention`: drops predictions finished more than `forgetAfterMs` ago (swept at most
   * every tenth of that, in simulated time) and all but the last `maxRecorded` requests and
   * webhook deliveries, so a stand-in left running holds a bounded amount of memory.
   */
  private forgetOld(): void {
    const r = this.opts.retention;
    if (!r) return;
    const now = this.clock.now();
    if (now - this.sweptAt < r.forgetAfterMs / 10) return;
    this.sweptAt = now;
    for (const p of this.predictions.values()) {
      if (this.active.has(p)) continue;
      const ended = p.stateAt(now).completedAt;
      if (ended === null || now - ended < r.forgetAfterMs) continue;
      this.predictions.delete(p.id);
      this.byStream.delete(p.streamToken);
      this.byFile.delete(p.fileToken);
      this.webhooks.forget(p.id);
    }
    trimToLast(this.requests, r.maxRecorded);
    trimToLast(this.webhooks.deliveries, r.maxRecorded);
  }

  /** Brings a prediction's stream events and webhooks up to the clock's time. */
  private sync(p: SimPrediction): void {
    const now = this.clock.now();
    const added = p.advanceEvents(now);
    this.webhooks.observe(p);
    if (added) for (const l of [...p.listeners]) l();
    if (p.stateAt(this.clock.now()).completedAt !== null && (p.model.kind !== 'text' || p.streamEnded))
      this.active.delete(p);
  }

  private timelineFor(model: StandinModel): Timeline {
    const presets = { demo: DEMO_TIMELINES, minutes: MINUTES_TIMELINES, realistic: {} as Record<string, Timeline> };
    const base = presets[this.preset][model.ref] ?? model.timeline;
    return { ...base, ...this.faults.timelines[model.ref] };
  }

  /** Counts a request against the per-minute budget; the seconds to wait if it is over. */
  private overBudget(kind: 'create' | 'other'): number | null {
    const now = this.clock.now();
    const list = this.budgets[kind];
    while (list.length && list[0]! <= now - 60_000) list.shift();
    if (list.length >= this.limitOf(kind)) return Math.max(1, Math.ceil((list[0]! + 60_000 - now) / 1000));
    list.push(now);
    return null;
  }

  private limitOf(kind: 'create' | 'other'): number {
    return kind === 'create' ? this.faults.rateLimits.createPerMinute : this.faults.rateLimits.otherPerMinute;
  }

  private send(res: ServerResponse, rec: RecordedRequest | null, a: Answer, extra: { slowMs?: number } = {}): void {
    if (res.headersSent || res.destroyed) return;
    const body = a.body === undefined ? '' : JSON.stringify(a.body);
    const headers: Record<string, string> = {
      'content-type': a.problem ? 'application/problem+json' : 'application/json; charset=utf-8',
      'content-length': String(Buffer.byteLength(body)),
      ...a.headers,
    };
    if (rec && rec.op !== 'admin') {
      const kind = rec.op === 'create' ? 'create' : 'other';
      headers['ratelimit-remaining'] = String(Math.max(0, this.limitOf(kind) - this.budgets[kind].length));
      headers['ratelimit-reset'] = '1';
    }
    if (rec) rec.status = a.status;
    res.writeHead(a.status, headers);
    if (extra.slowMs) {
      res.flushHeaders();
      setTimeout(() => res.end(body), extra.slowMs).unref();
    } else res.end(body);
  }

  // ---- the server -------------------------------------------------------------------------

  private async handle(req: IncomingMessage, res: ServerResponse): Promise<void> {
    const url = new URL(req.url ?? '/', this.origin);
    const method = req.method ?? 'GET';
    const body = parseBody(await readBody(req));
    const { op, params } = route(method, url.pathname);
    if (op === 'admin') return this.send(res, null, await this.admin(method, url, body));
    const rec = this.record(req, method, url, op, body);
    if (op === 'unknown') return this.send(res, rec, NOT_FOUND());
    if (op !== 'stream' && op !== 'file' && !this.authorized(req))
      return this.send(res, rec, problem(401, 'You did not pass a valid authentication token', 'Unauthenticated'));

    const fault = this.faults.take(op, this.modelRefOf(op, params, body), (a) => faultFits(op, a));
    if (fault) {
      rec.fault = fault.kind;
      if (await this.answeredByFault(res, rec, fault)) return;
    }
    if (op !== 'stream' && op !== 'file') {
      const retryAfter = this.overBudget(op === 'create' ? 'create' : 'other');
      if (retryAfter !== null) return this.send(res, rec, throttled(retryAfter));
    }
    return this.dispatch(op, { req, res, rec, url, params, fault });
  }

  /** Records a (non-admin) request, `authorization` left out. */
  private record(req: IncomingMessage, method: string, url: URL, op: RouteOp, body: unknown): RecordedRequest {
    const headers = { ...req.headers };
    delete headers.authorization;
    const rec: RecordedRequest = {
      seq: ++this.seq,
      at: this.clock.now(),
      wallAt: Date.now(),
      method,
      path: url.pathname + url.search,
      op,
      headers,
      body,
      status: null,
      fault: null,
    };
    this.requests.push(rec);
    return rec;
  }

  private authorized(req: IncomingMessage): boolean {
    const auth = req.headers.authorization ?? '';
    const noCredit = this.opts.noCreditToken;
    return (
      auth === `Bearer ${this.token}` ||
      auth === `Token ${this.token}` ||
      (noCredit !== undefined && auth === `Bearer ${noCredit}`)
    );
  }

  /** The model a request is about, for fault rules that name one. */
  private modelRefOf(op: RouteOp, params: string[], body: unknown): string | undefined {
    if (op === 'create') {
      if (params.length) return `${params[0]}/${params[1]}`;
      const version = (body as { version?: unknown } | null)?.version;
      return typeof version === 'string' ? version.split(':')[0] : undefined;
    }
    if (op === 'get' || op === 'cancel') return this.predictions.get(params[0]!)?.model.ref;
    if (op === 'stream') return this.byStream.get(params[0]!)?.model.ref;
    return undefined;
  }

  /** Applies a fault taken for this request; true if that answered it (or left it hanging). */
  private async answeredByFault(res: ServerResponse, rec: RecordedRequest, fault: FaultAction): Promise<boolean> {
    switch (fault.kind) {
      case 'drop':
        res.socket?.destroy();
        return true;
      case 'hang':
        return true; // the socket stays open until the client gives up or close() destroys it
      case 'delay':
        await sleepReal(fault.ms);
        return false;
      case 'status': {
        const title = fault.status >= 500 ? 'Internal Server Error' : undefined;
        const detail = fault.detail ?? `Stand-in injected HTTP ${fault.status}`;
        const answer =
          fault.status === 429 ? throttled(fault.retryAfter, fault.detail) : problem(fault.status, detail, title);
        this.send(res, rec, answer);
        return true;
      }
      default:
        return false;
    }
  }

  private dispatch(op: RouteOp, x: Exchange): Promise<void> | void {
    const { res, rec, params, fault } = x;
    const slowMs = fault?.kind === 'slow_body' ? fault.ms : undefined;
    switch (op) {
      case 'create':
        return this.create(x);
      case 'get':
      case 'cancel':
        return this.getOrCancel(op, x);
      case 'list':
        return this.send(res, rec, this.list(x.url), { slowMs });
      case 'secret':
        return this.send(res, rec, { status: 200, body: { key: this.webhookSecret } }, { slowMs });
      case 'account':
        // Replicate's GET /v1/account: whom the token belongs to (a cheap authenticated call).
        return this.send(
          res,
          rec,
          { status: 200, body: { type: 'organization', username: 'standin', name: 'Replicate stand-in' } },
          { slowMs },
        );
      case 'model': {
        const m = modelOf(params[0]!, params[1]!);
        if (!m) return this.send(res, rec, NOT_FOUND());
        return this.send(
          res,
          rec,
          { status: 200, body: modelView(this.origin, params[0]!, params[1]!, m) },
          { slowMs },
        );
      }
      case 'stream': {
        const p = this.byStream.get(params[0]!);
        if (!p) return this.send(res, rec, NOT_FOUND());
        return this.stream(x, p);
      }
      case 'file':
        return this.file(x);
      default:
        return this.send(res, rec, NOT_FOUND());
    }
  }

  // ---- handlers -------------------------------------------------------------------------

  private async create(x: Exchange): Promise<void> {
    const { req, res, rec, fault } = x;
    const checked = checkCreate(rec.body, x.params, req.headers, {
      noCredit: this.faults.noCredit,
      noCreditToken: this.opts.noCreditToken,
      strictInputKeys: this.opts.strictInputKeys,
    });
    if ('refused' in checked) return this.send(res, rec, checked.refused);
    const p = this.startPrediction(checked.request);
    rec.predictionId = p.id;

    if (fault?.kind === 'create_then_drop') {
      res.socket?.destroy();
      return;
    }
    if (fault?.kind === 'create_then_status')
      return this.send(
        res,
        rec,
        problem(
          fault.status,
          'Internal server error (stand-in fault after creating the prediction)',
          'Internal Server Error',
        ),
      );
    const slowMs = fault?.kind === 'slow_body' ? fault.ms : undefined;
    const prefer = typeof req.headers.prefer === 'string' ? req.headers.prefer : '';
    const wait = /^\s*wait(?:=(\d+))?\s*$/.exec(prefer);
    if (!wait)
      return this.send(res, rec, { status: 201, body: p.view(p.createdAt, this.origin), headers: {} }, { slowMs });

    // Prefer: wait[=n] (sync mode): answer when it ends (files: when the output is there), or after n s.
    const secs = wait[1] ? Math.min(60, Math.max(1, Number(wait[1]))) : 60;
    const timedOut = await this.waitForResult(p, p.createdAt + secs * 1000, res);
    const headers = { 'preference-applied': prefer.trim(), location: `${this.origin}/v1/predictions/${p.id}` };
    const view = p.view(this.clock.now(), this.origin);
    if (timedOut && this.faults.syncTimeoutStatus === 'starting') view.status = 'starting';
    this.send(res, rec, { status: 201, body: view, headers }, { slowMs });
  }

  private startPrediction(r: CreateRequest): SimPrediction {
    const { model, input } = r;
    const now = this.clock.now();
    // For people trying failure paths by hand (demo mode): `[[fail]]` or `[[unsafe]]` in the prompt.
    const marker = typeof input.prompt === 'string' ? /\[\[(fail|unsafe)\]\]/.exec(input.prompt)?.[1] : undefined;
    const outcome: Outcome =
      marker === 'fail'
        ? { type: 'fail' }
        : marker === 'unsafe'
          ? { type: 'safety' }
          : this.faults.takeOutcome(model.ref);
    const p = new SimPrediction(model, input, now, planFor(model, input, this.timelineFor(model), outcome), {
      webhook: r.webhook,
      webhookEventsFilter: r.webhookEventsFilter,
      deadlineAt: r.cancelAfterMs === null ? null : now + r.cancelAfterMs,
      dataTtlMs: this.dataTtlMs,
      seq: this.predSeq++,
      createdWall: Date.now(),
    });
    this.predictions.set(p.id, p);
    this.byStream.set(p.streamToken, p);
    this.byFile.set(p.fileToken, p);
    this.active.add(p);
    this.log?.debug({ id: p.id, model: model.ref }, 'stand-in: prediction created');
    this.sync(p);
    return p;
  }

  /** Waits until the prediction is done (file models: has output) or `until`; true if it timed out. */
  private waitForResult(p: SimPrediction, until: number, res: ServerResponse): Promise<boolean> {
    const { clock, closing } = this;
    return new Promise<boolean>((resolve) => {
      const check = () => {
        this.sync(p);
        const s = p.stateAt(clock.now());
        const done = s.completedAt !== null || (p.model.kind !== 'text' && s.output !== null);
        if (done || clock.now() >= until || closing.signal.aborted || res.destroyed) {
          off();
          closing.signal.removeEventListener('abort', check);
          resolve(!done);
        }
      };
      const off = clock.onTick(check);
      closing.signal.addEventListener('abort', check);
      check();
    });
  }

  private getOrCancel(op: 'get' | 'cancel', { res, rec, params, fault }: Exchange): void {
    const p = this.predictions.get(params[0]!);
    if (!p) return this.send(res, rec, NOT_FOUND());
    this.sync(p);
    if (op === 'cancel' && fault?.kind !== 'cancel_ignored' && p.stateAt(this.clock.now()).completedAt === null) {
      p.canceledAt = this.clock.now();
      this.active.add(p);
      this.sync(p);
    }
    const slowMs = fault?.kind === 'slow_body' ? fault.ms : undefined;
    this.send(res, rec, { status: 200, body: p.view(this.clock.now(), this.origin) }, { slowMs });
  }

  private list(url: URL): Answer {
    const after = url.searchParams.get('created_after');
    const before = url.searchParams.get('created_before');
    const afterMs = after ? Date.parse(after) : NaN;
    const beforeMs = before ? Date.parse(before) : NaN;
    if ((after && Number.isNaN(afterMs)) || (before && Number.isNaN(beforeMs)))
      return problem(400, 'created_after / created_before must be ISO-8601 times', 'Bad request');
    const all = [...this.predictions.values()]
      .filter(
        (p) =>
          (Number.isNaN(afterMs) || p.extras.createdWall >= afterMs) &&
          (Number.isNaN(beforeMs) || p.extras.createdWall < beforeMs),
      )
      .sort((a, b) => b.extras.createdWall - a.extras.createdWall || b.extras.seq - a.extras.seq);
    const cursor = url.searchParams.get('cursor');
    const offset = cursor ? Number(Buffer.from(cursor, 'base64url').toString('utf8').replace(/^o=/, '')) || 0 : 0;
    const { pageSize, origin } = this;
    const page = all.slice(offset, offset + pageSize);
    const link = (o: number) => {
      const q = new URLSearchParams(url.searchParams);
      q.set('cursor', Buffer.from(`o=${o}`, 'utf8').toString('base64url'));
      return `${origin}/v1/predictions?${q}`;
    };
    const now = this.clock.now();
    return {
      status: 200,
      body: {
        previous: offset > 0 ? link(Math.max(0, offset - pageSize)) : null,
        next: offset + pageSize < all.length ? link(offset + pageSize) : null,
        results: page.map((p) => p.view(now, origin)),
      },
    };
  }

  private stream({ req, res, rec, fault }: Exchange, p: SimPrediction): void {
    this.sync(p);
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

  private file({ req, res, rec, params, fault }: Exchange): void {
    const p = this.byFile.get(params[0]!);
    if (!p || !p.plan.file || p.plan.file.name !== params[1]) return this.send(res, rec, NOT_FOUND());
    const s = p.stateAt(this.clock.now());
    if (s.output === null || s.dataRemoved) return this.send(res, rec, NOT_FOUND());
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

  private async admin(method: string, url: URL, body: unknown): Promise<Answer> {
    const { clock, faults } = this;
    const path = url.pathname.replace(/^\/__admin/, '') || '/';
    const b = (body && typeof body === 'object' ? body : {}) as Record<string, unknown>;
    if (method === 'GET' && path === '/requests') {
      const op = url.searchParams.get('op');
      return { status: 200, body: op ? this.requests.filter((r) => r.op === op) : this.requests };
    }
    if (method === 'DELETE' && path === '/requests') {
      this.requests.length = 0;
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
      try {
        faults.apply(b as Parameters<Faults['apply']>[0]);
      } catch (err) {
        if (err instanceof RangeError) return problem(400, err.message, 'Bad request');
        throw err;
      }
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
      return { status: 200, body: [...this.predictions.values()].map((p) => p.view(clock.now(), this.origin)) };
    if (method === 'GET' && path === '/webhooks') return { status: 200, body: this.webhooks.deliveries };
    if (method === 'POST' && path === '/webhook-secret/rotate') {
      this.webhookSecret = `whsec_${randomBytes(24).toString('base64')}`;
      return { status: 200, body: { key: this.webhookSecret } };
    }
    if (method === 'POST' && path === '/reset') {
      this.reset();
      return { status: 204, body: undefined };
    }
    return NOT_FOUND();
  }
}

export async function startStandin(opts: StandinOptions = {}): Promise<Standin> {
  const s = new StandinServer(opts);
  const addr = await s.listen();
  const { clock, origin } = s;
  return {
    url: `${origin}/v1`,
    origin,
    port: addr.port,
    token: s.token,
    get webhookSecret() {
      return s.webhookSecret;
    },
    clock,
    faults: s.faults,
    requests: s.requests,
    webhookDeliveries: s.webhooks.deliveries,
    predictions: s.predictions,
    creates: () => s.requests.filter((r) => r.op === 'create'),
    prediction: (id) => s.predictions.get(id)?.view(clock.now(), origin) ?? null,
    advance: async (ms, o) => {
      if (!(clock instanceof VirtualClock)) throw new Error('advance() needs a virtual clock');
      await clock.advance(ms, o);
    },
    webhooksSettled: () => s.webhooks.settled(),
    reset: () => s.reset(),
    close: () => s.close(),
  };
}
