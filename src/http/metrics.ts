import diagnostics from 'node:diagnostics_channel';
import { timingSafeEqual } from 'node:crypto';
import { Router, type Request, type RequestHandler } from 'express';
import { collectDefaultMetrics, Counter, Gauge, Histogram, Registry } from 'prom-client';
import type { Db } from '../db';
import type { RealtimeStats, TransportCounts } from '../realtime';
import { TASK_STATUSES } from '../tasks/task';
import { TaskStore } from '../tasks/store';

export interface MetricsDeps {
  db: Db;
  realtime: { stats(): RealtimeStats & { transports: Record<string, TransportCounts> } };
  runner: { readonly activeCount: number };
  /**
   * The provider API: calls to its base URL's origin are timed (undici diagnostics channels),
   * labelled with `routeOf(path)` (the provider's URL layout, ids taken out).
   */
  providers?: ReadonlyArray<{ id: string; baseUrl: string; routeOf(path: string): string }>;
  /** How long a tasks-by-state count is reused (default 5 s). */
  taskCountTtlMs?: number;
  /** Node process metrics (process_*, nodejs_*); default true. */
  processMetrics?: boolean;
  /** METRICS_TOKEN: when set, GET /metrics needs `Authorization: Bearer <it>`. */
  token?: string;
}

export interface Metrics {
  registry: Registry;
  router(): Router;
  /** Counts and times every HTTP request by method, route and status (mount it first). */
  observeRequests: RequestHandler;
  /** Stops listening to provider calls. */
  close(): void;
}

/** The realtime counters exported as Prometheus counters, by stats() key. */
const REALTIME_COUNTERS: Array<[keyof RealtimeStats, string, string]> = [
  ['joins', 'pyre_channel_joins_total', 'Channel joins accepted'],
  ['joinErrors', 'pyre_channel_join_errors_total', 'Channel joins refused'],
  ['messagesIn', 'pyre_realtime_messages_in_total', 'Messages received from clients'],
  ['messagesOut', 'pyre_realtime_messages_out_total', 'Messages sent to clients'],
  [
    'slowClientDisconnects',
    'pyre_realtime_slow_client_disconnects_total',
    'Sockets closed because the client read too slowly',
  ],
  ['idleDisconnects', 'pyre_realtime_idle_disconnects_total', 'Sockets closed for missing heartbeats'],
  ['protocolErrors', 'pyre_realtime_protocol_errors_total', 'Malformed frames received'],
  ['rateLimited', 'pyre_realtime_rate_limited_total', 'Messages refused by the per-socket rate limit'],
  ['channelCrashes', 'pyre_channel_crashes_total', 'Channel callbacks that threw'],
  ['connectsRefused', 'pyre_realtime_connects_refused_total', 'Socket connections refused (credentials, origin)'],
];

interface UndiciRequest {
  origin?: string;
  method?: string;
  path?: string;
}

/**
 * Prometheus metrics on a registry of this gateway's own (two gateways in one process,
 * as in tests, do not collide). Values are read when scraped: realtime.stats(), the
 * runner's running count, and a cached GROUP BY of tasks by state.
 */
export function createMetrics(deps: MetricsDeps): Metrics {
  const registry = new Registry();
  if (deps.processMetrics !== false) collectDefaultMetrics({ register: registry });
  registerRealtimeMetrics(registry, deps.realtime);
  registerTaskMetrics(registry, deps);
  const provider = deps.providers?.length ? observeProviderCalls(registry, deps.providers) : undefined;
  return {
    registry,
    observeRequests: requestObserver(registry),
    router: () => metricsRouter(registry, deps.token),
    close() {
      provider?.close();
    },
  };
}

function registerRealtimeMetrics(registry: Registry, realtime: MetricsDeps['realtime']): void {
  new Gauge({
    name: 'pyre_realtime_sockets',
    help: 'Open sockets (WebSocket and long-poll)',
    registers: [registry],
    collect() {
      this.set(realtime.stats().sockets);
    },
  });
  new Gauge({
    name: 'pyre_realtime_longpoll_sessions',
    help: 'Open long-poll sessions',
    registers: [registry],
    collect() {
      this.set(realtime.stats().transports.longpoll?.sessions ?? 0);
    },
  });
  new Gauge({
    name: 'pyre_channels',
    help: 'Joined channels',
    registers: [registry],
    collect() {
      this.set(realtime.stats().channels);
    },
  });
  for (const [key, name, help] of REALTIME_COUNTERS) {
    new Counter({
      name,
      help,
      registers: [registry],
      collect() {
        // The realtime layer keeps the running totals; the counter mirrors them.
        this.reset();
        this.inc(realtime.stats()[key]);
      },
    });
  }
}

type TaskCounts = Awaited<ReturnType<TaskStore['countByStatus']>>;

/**
 * Tasks by state: one GROUP BY per scrape at most every `ttlMs`, shared by the gauges. While the
 * database cannot be reached, /metrics still answers (sockets, channels, ...) with the last task
 * counts read, instead of failing the whole scrape.
 */
function cachedTaskCounts(db: Db, ttlMs: number): () => Promise<TaskCounts | undefined> {
  let lastRead: TaskCounts | undefined;
  let cached: { at: number; value: Promise<TaskCounts | undefined> } | undefined;
  return () => {
    if (!cached || Date.now() - cached.at > ttlMs) {
      const value = new TaskStore(db).countByStatus().then(
        (c) => (lastRead = c),
        () => {
          cached = undefined;
          return lastRead;
        },
      );
      cached = { at: Date.now(), value };
    }
    return cached.value;
  };
}

function registerTaskMetrics(registry: Registry, deps: MetricsDeps): void {
  const counts = cachedTaskCounts(deps.db, deps.taskCountTtlMs ?? 5000);
  new Gauge({
    name: 'pyre_tasks',
    help: 'Stored tasks by status',
    labelNames: ['status'],
    registers: [registry],
    async collect() {
      const c = await counts();
      if (c) for (const s of TASK_STATUSES) this.set({ status: s }, c.byStatus.get(s) ?? 0);
    },
  });
  new Gauge({
    name: 'pyre_queue_depth',
    help: 'Tasks waiting to run (status queued)',
    registers: [registry],
    async collect() {
      const c = await counts();
      if (c) this.set(c.byStatus.get('queued') ?? 0);
    },
  });
  new Gauge({
    name: 'pyre_task_retries',
    help: 'Attempts beyond the first, summed over stored tasks (runner retries)',
    registers: [registry],
    async collect() {
      const c = await counts();
      if (c) this.set(c.retries);
    },
  });
  new Gauge({
    name: 'pyre_runner_active_tasks',
    help: 'Tasks this process is running now',
    registers: [registry],
    collect() {
      this.set(deps.runner.activeCount);
    },
  });
}

const UNDICI_CHANNELS = ['undici:request:create', 'undici:request:headers', 'undici:request:error'] as const;

/** Provider calls, timed from undici's diagnostics channels: no hook in the client needed. */
function observeProviderCalls(registry: Registry, providers: NonNullable<MetricsDeps['providers']>): { close(): void } {
  const latency = new Histogram({
    name: 'pyre_provider_request_duration_seconds',
    help: 'Provider API calls, from request to response headers',
    labelNames: ['provider', 'method', 'route', 'status'],
    buckets: [0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30],
    registers: [registry],
  });
  const failures = new Counter({
    name: 'pyre_provider_request_failures_total',
    help:
      'Provider calls answered 429 or 5xx, or that failed on the network ' +
      '(the client retries these within its policy)',
    labelNames: ['provider', 'method', 'route', 'reason'],
    registers: [registry],
  });
  const started = new WeakMap<object, { t0: number; provider: (typeof providers)[number] }>();
  const byOrigin = new Map(providers.map((p) => [new URL(p.baseUrl).origin, p]));
  const labelsOf = (r: UndiciRequest, p: (typeof providers)[number]) => ({
    provider: p.id,
    method: r.method ?? 'GET',
    route: p.routeOf(r.path ?? ''),
  });
  const onCreate = (m: unknown) => {
    const { request } = m as { request: UndiciRequest };
    const provider = request.origin === undefined ? undefined : byOrigin.get(new URL(request.origin).origin);
    if (provider) started.set(request, { t0: performance.now(), provider });
  };
  const onHeaders = (m: unknown) => {
    const { request, response } = m as { request: UndiciRequest; response: { statusCode: number } };
    const s = started.get(request);
    if (s === undefined) return;
    started.delete(request);
    const labels = labelsOf(request, s.provider);
    latency.observe({ ...labels, status: String(response.statusCode) }, (performance.now() - s.t0) / 1000);
    if (response.statusCode === 429 || response.statusCode >= 500)
      failures.inc({ ...labels, reason: String(response.statusCode) });
  };
  const onError = (m: unknown) => {
    const { request, error } = m as { request: UndiciRequest; error: { code?: string; name?: string } };
    const s = started.get(request);
    if (s === undefined) return;
    started.delete(request);
    failures.inc({ ...labelsOf(request, s.provider), reason: error?.code ?? error?.name ?? 'error' });
  };
  const handlers = [onCreate, onHeaders, onError];
  UNDICI_CHANNELS.forEach((name, i) => diagnostics.subscribe(name, handlers[i]!));
  return {
    close() {
      UNDICI_CHANNELS.forEach((name, i) => diagnostics.unsubscribe(name, handlers[i]!));
    },
  };
}

/** Counts and times every HTTP request by method, route and status. */
/** Each request's `route` and the matched route with its mount path (see ROUTE_ACCESSOR). */
const routes = new WeakMap<object, { route: unknown; matched?: string }>();

/**
 * `req.route`, noting the matched route with its router's mount path when Express sets it: by
 * the time an error answer is sent, req.baseUrl has been restored to what it was outside the
 * router. Defined once on the app's request prototype, with the same two functions for every
 * request, and what it notes is kept beside the request, not on it: an accessor defined on each
 * request (closures of its own), or symbol properties added to it, cost several µs a request.
 */
const ROUTE_ACCESSOR: PropertyDescriptor = {
  configurable: true,
  enumerable: true,
  get(this: Request) {
    return routes.get(this)?.route;
  },
  set(this: Request, v: { path?: unknown } | undefined) {
    routes.set(this, { route: v, matched: typeof v?.path === 'string' ? `${this.baseUrl}${v.path}` : undefined });
  },
};

function requestObserver(registry: Registry): RequestHandler {
  const httpRequests = new Counter({
    name: 'pyre_http_requests_total',
    help: 'HTTP requests answered, by method, route and status',
    labelNames: ['method', 'route', 'status'],
    registers: [registry],
  });
  const httpDuration = new Histogram({
    name: 'pyre_http_request_duration_seconds',
    help: 'HTTP request latency until the answer is sent, by method, route and status',
    labelNames: ['method', 'route', 'status'],
    buckets: [0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10],
    registers: [registry],
  });
  // The series of each label set, looked up once (routes are patterns: the set stays small).
  const series = new Map<
    string,
    { count: ReturnType<typeof httpRequests.labels>; duration: ReturnType<typeof httpDuration.labels> }
  >();
  const seriesOf = (method: string, route: string, status: number) => {
    const key = `${method} ${status} ${route}`;
    let s = series.get(key);
    if (!s) {
      const labels = { method, route, status: String(status) };
      s = { count: httpRequests.labels(labels), duration: httpDuration.labels(labels) };
      series.set(key, s);
    }
    return s;
  };
  const patched = new WeakSet<object>();
  return (req, res, next) => {
    const started = process.hrtime.bigint();
    const proto = Object.getPrototypeOf(req) as object;
    if (!patched.has(proto)) {
      Object.defineProperty(proto, 'route', ROUTE_ACCESSOR);
      patched.add(proto);
    }
    res.on('finish', () => {
      const s = seriesOf(req.method, routes.get(req)?.matched ?? unmatchedLabel(req), res.statusCode);
      s.count.inc();
      s.duration.observe(Number(process.hrtime.bigint() - started) / 1e9);
    });
    next();
  };
}

/** GET /metrics, behind METRICS_TOKEN when one is set. */
function metricsRouter(registry: Registry, token: string | undefined): Router {
  const r = Router();
  r.get('/metrics', async (req, res) => {
    if (token !== undefined && !bearerIs(req, token)) {
      res.setHeader('WWW-Authenticate', 'Bearer realm="metrics"');
      res.status(401).json({ errors: { detail: 'unauthorized: /metrics needs the METRICS_TOKEN as a bearer token' } });
      return;
    }
    const body = await registry.metrics();
    res.setHeader('Content-Type', registry.contentType);
    res.send(body);
  });
  return r;
}

/** Requests no route took, grouped by area (never by path: a label per id would grow forever). */
function unmatchedLabel(req: Request): string {
  const url = req.originalUrl.split('?', 1)[0]!;
  if (url.startsWith('/files/')) return '/files/*';
  if (url.startsWith('/socket/')) return '/socket/*';
  if (url.startsWith('/api/')) return 'unmatched /api';
  return 'other';
}

function bearerIs(req: Request, token: string): boolean {
  const m = /^Bearer\s+(\S+)\s*$/i.exec(req.get('authorization') ?? '');
  const given = Buffer.from(m?.[1] ?? '');
  const want = Buffer.from(token);
  return given.length === want.length && timingSafeEqual(given, want);
}
