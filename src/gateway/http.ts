import type { IncomingHttpHeaders, IncomingMessage } from 'node:http';
import type { Express } from 'express';
import type { Authenticator } from '../auth/tokens';
import type { UserAssigns } from '../channels/task-channel';
import type { Db } from '../db';
import type { Bus } from '../bus/bus';
import type { TaskCreationLimit } from '../db/rate-limit';
import { createHttpApp } from '../http/app';
import { dashboardRouter } from '../http/dashboard';
import { IdempotencyKeys } from '../http/idempotency';
import { createMetrics } from '../http/metrics';
import { openApiRouter } from '../http/openapi';
import { webhookRouter } from '../http/webhooks-route';
import type { RealtimeServer } from '../realtime';
import type { TaskRunner } from '../runner/runner';
import type { OutputStore } from '../storage/outputs';
import type { ModelRegistry } from '../tasks/models';
import type { TaskService } from '../tasks/service';
import { clientLogLimit, type PartContext } from './context';
import type { ProviderParts } from './provider';

/** How often expired idempotency keys are deleted. */
const IDEMPOTENCY_SWEEP_MS = 3600_000;

/**
 * The HTTP side: the REST API, then the realtime transports' HTTP routes, metrics, the OpenAPI
 * document, the dashboard, output files and the provider's webhooks; plus the hourly sweep of
 * expired idempotency keys.
 */
export function createGatewayHttp(
  ctx: PartContext,
  opts: {
    db: Db;
    tasks: TaskService;
    registry: ModelRegistry;
    auth: Authenticator;
    realtime: RealtimeServer<UserAssigns>;
    runner: TaskRunner;
    provider: ProviderParts;
    outputs: OutputStore;
    taskLimit: TaskCreationLimit;
    bus: Bus | undefined;
    /** The base URL a request reached pyre at (output URLs are made absolute against it). */
    baseUrlOf?: (headers: IncomingHttpHeaders) => string;
  },
): Express {
  const { config, logger, closers } = ctx;
  const { db, tasks, auth, realtime, runner, provider, outputs } = opts;
  const idempotency = new IdempotencyKeys(db, ctx.now);
  const metrics = createMetrics({
    db,
    realtime,
    runner,
    providers: [...provider.running.values()],
    token: config.metricsToken,
  });
  closers.push('metrics', () => metrics.close());
  const app = createHttpApp({
    db,
    tasks,
    auth,
    idempotency,
    logger,
    taskLimit: opts.taskLimit,
    ...(opts.bus ? { busStatus: () => opts.bus!.status() } : {}),
    corsOrigins: config.corsOrigins,
    providerState: () => provider.state(),
    providersReadiness: () => provider.readiness(),
    accessLogLimit: clientLogLimit(config),
    observeRequests: metrics.observeRequests,
    ...(opts.baseUrlOf ? { baseUrlOf: (req: IncomingMessage) => opts.baseUrlOf!(req.headers) } : {}),
    mount: (a) => {
      a.use(realtime.middleware());
      a.use(metrics.router(), openApiRouter({ registry: opts.registry }), dashboardRouter({ auth }));
      a.use(outputs.router());
      a.use(
        '/api',
        webhookRouter({
          verifier: (id) => provider.running.get(id)?.webhooks,
          logger,
          onPrediction: (taskId, prediction, id) => runner.predictionChanged(taskId, prediction, id),
        }),
      );
    },
  });
  const sweep = setInterval(() => {
    idempotency.sweep().catch((err) => logger.warn({ err }, 'idempotency sweep failed'));
  }, IDEMPOTENCY_SWEEP_MS);
  sweep.unref();
  closers.push('idempotency sweep', () => clearInterval(sweep));
  return app;
}
