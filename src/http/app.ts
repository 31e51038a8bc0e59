import type { IncomingMessage } from 'node:http';
import express, { type Express, type RequestHandler } from 'express';
import type { Authenticator } from '../auth/tokens';
import type { BusStatus } from '../bus/bus';
import type { Db } from '../db';
import type { Logger } from '../log';
import type { LogLimit } from '../realtime';
import type { ProviderReadiness } from '../providers/plugin';
import type { TaskService } from '../tasks/service';
import type { TaskCreationLimit } from '../db/rate-limit';
import { DATABASE_RETRY_AFTER_S, errorHandler, notFoundRoute } from './errors';
import type { IdempotencyKeys } from './idempotency';
import { cors } from './cors';
import { methodNotAllowed, requestContext } from './middleware';
import { tasksRouter } from './tasks-routes';

export interface HttpDeps {
  db: Db;
  tasks: TaskService;
  auth: Authenticator;
  idempotency: IdempotencyKeys;
  logger: Logger;
  /** Runs first on every request (the HTTP metrics). */
  observeRequests?: RequestHandler;
  /** CORS_ORIGINS: browser origins allowed to call /api (unset: none but the gateway's own). */
  corsOrigins?: string[];
  /** The per-user task-creation limit (RATE_LIMIT_TASKS_PER_MINUTE), shared with the channels. */
  taskLimit?: TaskCreationLimit;
  /** Whether this process hears the other processes, on each topic of the cluster bus; absent: no bus. */
  busStatus?: () => BusStatus;
  /** The base URL this request reached pyre at (output file URLs are made absolute against it). */
  baseUrlOf?: (req: IncomingMessage) => string;
  /** Whether the provider takes the gateway's token (`ok`, `unauthorized`, `unreachable`, `checking`). */
  providerState?: () => { state: string; detail: string | null } | undefined;
  /** Every running provider's readiness by id; one whose credentials are refused (`unauthorized`) makes /readyz 503. */
  providersReadiness?: () => Record<string, ProviderReadiness>;
  /** Access lines one client may cause per status class and window (default ACCESS_LOG_LIMIT); false: no limit. */
  accessLogLimit?: LogLimit | false;
  /** Extra routers mounted before the API's 404 (webhooks, files, metrics, dashboard). */
  mount?: (app: Express) => void;
}

/** The Express app: REST API, health, and whatever the composition root mounts. */
export function createHttpApp(deps: HttpDeps): Express {
  const app = express();
  app.disable('x-powered-by');
  app.set('etag', false);
  app.set('query parser', 'simple');
  app.use(requestContext(deps.logger, deps.accessLogLimit));
  if (deps.observeRequests) app.use(deps.observeRequests);
  app.use('/api', cors(deps.corsOrigins));

  app.get('/healthz', (_req, res) => {
    res.json({ status: 'ok' });
  });
  app.get('/readyz', readiness(deps));

  app.get('/api/models', (_req, res) => {
    res.json({ data: deps.tasks.registry.describe() });
  });
  app.all('/api/models', methodNotAllowed('GET, HEAD'));
  // The task routes first: they are the hot path, and they only take `/api/tasks...`.
  app.use('/api', tasksRouter(deps));
  deps.mount?.(app);
  app.use('/api', notFoundRoute);
  app.use(errorHandler);
  return app;
}

/** The database's answer to `select 1` within 2 s: `ok`, or why not. */
async function databaseState(db: Db): Promise<string> {
  let timer: NodeJS.Timeout | undefined;
  try {
    await Promise.race([
      db.raw('select 1'),
      new Promise((_, reject) => {
        timer = setTimeout(() => reject(new Error('no answer within 2 s')), 2000);
      }),
    ]);
    return 'ok';
  } catch (err) {
    return `unreachable (${(err as Error).message})`;
  } finally {
    clearTimeout(timer);
  }
}

/**
 * Ready: the database answers (within 2 s), with several processes the bus listens, and the
 * provider has not refused the token. Not ready is 503 naming why; it returns to 200 by itself
 * when the cause is gone. The provider's state is reported either way; only a refused token
 * (`unauthorized`: every task would fail, a deployment to hold back) makes it 503. An unreachable
 * provider does not: tasks wait and retry, and reading tasks and the realtime feed still work.
 */
function readiness(deps: HttpDeps): RequestHandler {
  return async (_req, res) => {
    const database = await databaseState(deps.db);
    const busStatus = deps.busStatus?.();
    const bus = busStatus ? (busStatus.connected ? 'ok' : 'reconnecting') : undefined;
    const provider = deps.providerState?.();
    const providers = deps.providersReadiness?.();
    const report = {
      database,
      ...(busStatus ? { bus, bus_engine: busStatus.engine, bus_channels: busStatus.channels } : {}),
      ...(provider ? { provider: provider.state } : {}),
      ...(provider?.detail ? { provider_detail: provider.detail } : {}),
      ...(providers
        ? {
            providers: Object.fromEntries(
              Object.entries(providers).map(([id, r]) => [
                id,
                { state: r.state, credentials: r.credentials, ...(r.detail ? { detail: r.detail } : {}) },
              ]),
            ),
          }
        : {}),
    };
    const why = [
      database !== 'ok' ? `database ${database}` : '',
      bus === 'reconnecting' ? 'bus reconnecting' : '',
      ...(providers
        ? Object.entries(providers)
            .filter(([, r]) => r.state === 'unauthorized')
            .map(([id, r]) => `the provider refused ${r.credential} (${id})`)
        : provider?.state === 'unauthorized'
          ? ['the provider refused REPLICATE_API_TOKEN']
          : []),
    ].filter(Boolean);
    if (why.length === 0) {
      res.json({ status: 'ok', ...report });
      return;
    }
    res.setHeader('Retry-After', String(DATABASE_RETRY_AFTER_S));
    res.status(503).json({ status: 'unavailable', ...report, errors: { detail: `not ready: ${why.join('; ')}` } });
  };
}
