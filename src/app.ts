import http from 'node:http';
import { randomBytes } from 'node:crypto';
import path from 'node:path';
import type { AddressInfo } from 'node:net';
import type { Express } from 'express';
import { Authenticator, TokenSigner } from './auth/tokens';
import type { Config } from './config';
import { migrate, openDatabase, type Db } from './db';
import { createHttpApp } from './http/app';
import { dashboardRouter } from './http/dashboard';
import { createMetrics } from './http/metrics';
import { openApiRouter } from './http/openapi';
import { IdempotencyKeys } from './http/idempotency';
import type { Logger } from './log';
import { ModelRegistry } from './tasks/models';
import { TaskService } from './tasks/service';
import { createReplicateClient, type ReplicateClient } from './providers/replicate/client';
import { startStandin, type Standin } from './providers/replicate/standin';
import { TaskRunner, type RunnerOptions } from './runner/runner';
import { OutputStore } from './storage/outputs';
import { replicateWebhookRouter } from './http/webhooks-route';
import { RealtimeServer, type CheckOrigin } from './realtime';
import { feedCursor, TaskChannel, UserTasksChannel, type UserAssigns } from './channels/task-channel';
import { TaskEventRelay } from './channels/task-events';
import { openClusterBus } from './db/bus';
import { TaskCreationLimit } from './db/rate-limit';
import { TokenError } from './auth/tokens';

export interface GatewayOptions {
  config: Config;
  logger: Logger;
  /** A database to use instead of opening one from the config (tests). */
  db?: Db;
  registry?: ModelRegistry;
  now?: () => Date;
  /** Runner settings for tests (poll interval, lease, retry policy). */
  runner?: Partial<Omit<RunnerOptions, 'db' | 'tasks' | 'provider' | 'openOutput' | 'outputs' | 'logger'>>;
  /** Provider client settings for tests (retry timing). */
  providerRetry?: { attempts: number; baseMs: number; maxMs: number };
}

/** The running gateway's parts, for main.ts and for tests. */
export interface Gateway {
  config: Config;
  db: Db;
  tasks: TaskService;
  auth: Authenticator;
  app: Express;
  server: http.Server;
  runner: TaskRunner;
  realtime: RealtimeServer<UserAssigns>;
  relay: TaskEventRelay;
  provider: ReplicateClient;
  outputs: OutputStore;
  /** The in-process Replicate stand-in, in demo mode. */
  demoStandin: Standin | undefined;
  /** The base URL clients reach this gateway at (PUBLIC_URL, or where it listens). */
  baseUrl(): string;
  /** Listen on config.port/host (0 picks a free port); resolves to the base URL. */
  listen(): Promise<string>;
  /** Stop accepting, finish what can be finished, close the database. */
  close(): Promise<void>;
}

/** The composition root: builds the gateway from its parts. No hidden globals. */
export async function createGateway(opts: GatewayOptions): Promise<Gateway> {
  const { config, logger } = opts;
  const ownDb = !opts.db;
  const db =
    opts.db ?? openDatabase({ databaseUrl: config.databaseUrl, pgliteDir: path.join(config.dataDir, 'pglite') });
  const applied = await migrate(db);
  if (applied.length) logger.info({ migrations: applied }, 'database migrated');

  const registry = opts.registry ?? new ModelRegistry();
  const tasks = new TaskService(db, registry, logger, { now: opts.now });
  const auth = new Authenticator(
    config.authSecret ? new TokenSigner(config.authSecret, config.tokenMaxTtlSeconds) : undefined,
  );
  const idempotency = new IdempotencyKeys(db, opts.now);

  let listenUrl = `http://${config.host}:${config.port}`;
  const baseUrl = () => config.publicUrl ?? listenUrl;

  // Demo mode: no provider token, so tasks run on a built-in Replicate stand-in.
  let demoStandin: Standin | undefined;
  let replicate = config.replicate;
  if (config.demoMode) {
    demoStandin = await startStandin({
      preset: 'demo',
      host: '127.0.0.1',
      logger: logger.child({ component: 'standin' }),
    });
    replicate = {
      ...replicate,
      apiToken: demoStandin.token,
      baseUrl: demoStandin.url,
      webhookSecret: demoStandin.webhookSecret,
    };
    logger.warn(
      { standin: demoStandin.url },
      'DEMO MODE: REPLICATE_API_TOKEN is unset, so tasks run on the built-in Replicate stand-in (simulated results, nothing is billed)',
    );
    // The stand-in starts empty: predictions of an earlier run are gone, so their tasks start over.
    await tasks.requeueLostPredictions();
  }
  const provider = createReplicateClient({
    token: replicate.apiToken!,
    baseUrl: replicate.baseUrl,
    logger: logger.child({ component: 'replicate' }),
    ...(opts.providerRetry ? { retry: opts.providerRetry } : {}),
  });
  let webhookSecret = replicate.webhookSecret;
  if (config.publicUrl && !webhookSecret) {
    try {
      webhookSecret = await provider.getWebhookSecret();
    } catch (err) {
      logger.warn(
        { err: (err as Error).message },
        'could not fetch the webhook signing secret; webhooks are refused, polling carries on',
      );
    }
  }
  const outputs = new OutputStore(config.dataDir, baseUrl);
  const server = http.createServer();
  // With PostgreSQL, several processes share the work; the cluster bus carries what crosses them.
  const bus = openClusterBus(db, randomBytes(6).toString('hex'), logger);
  const runner = new TaskRunner({
    db,
    tasks,
    provider,
    openOutput: (url, o) => provider.openOutput(url, o),
    outputs,
    logger: logger.child({ component: 'runner' }),
    concurrency: config.runner.concurrency,
    ...(config.publicUrl && webhookSecret
      ? { webhookUrl: (taskId: string) => `${config.publicUrl}/api/webhooks/replicate?task_id=${taskId}` }
      : {}),
    newWork: bus?.newWork,
    now: opts.now,
    ...opts.runner,
  });

  await bus?.realtime.start();

  // Realtime: the Phoenix channel server, with the task channels registered on it.
  const realtime = new RealtimeServer<UserAssigns>({
    checkOrigin: originCheck(config.checkOrigin),
    logger: logger.child({ component: 'realtime' }),
    ...(bus ? { pubsub: bus.realtime } : {}),
    connect: (params, info) => {
      const token = typeof params.token === 'string' && params.token !== '' ? params.token : info.authToken;
      try {
        const userId = auth.userFor(token);
        return { assigns: { userId }, id: `user_socket:${userId}` };
      } catch (err) {
        if (err instanceof TokenError) {
          logger.info({ reason: err.reason, transport: info.transport }, 'socket refused');
          return { error: true, status: 403 };
        }
        throw err;
      }
    },
  });
  // Committed task events reach this process's sockets at once, and other processes through the bus.
  const relay = new TaskEventRelay(
    tasks,
    (e) => {
      realtime.localBroadcast(`task:${e.task_id}`, e.event, e.payload);
      realtime.localBroadcast(`tasks:${e.user_id}`, e.event, { ...e.payload, cursor: feedCursor(e) });
    },
    logger,
    bus?.events,
  );
  const taskLimit = new TaskCreationLimit(db, config.rateLimitTasksPerMinute);
  realtime.channel('task:*', new TaskChannel(tasks, logger.child({ component: 'task_channel' }), relay, taskLimit));
  realtime.channel('tasks:*', new UserTasksChannel(tasks, logger.child({ component: 'task_channel' }), relay));
  realtime.attach(server);

  await relay.start();

  const metrics = createMetrics({ db, realtime, runner, providerBaseUrl: replicate.baseUrl });
  const app = createHttpApp({
    db,
    tasks,
    auth,
    idempotency,
    logger,
    taskLimit,
    ...(bus ? { busListening: bus.listening } : {}),
    mount: (a) => {
      a.use(realtime.middleware());
      a.use(metrics.router(), openApiRouter({ registry }), dashboardRouter({ auth }));
      a.use(outputs.router());
      a.use(
        '/api',
        replicateWebhookRouter({
          secret: () => webhookSecret,
          logger,
          onPrediction: (taskId, prediction) => runner.predictionChanged(taskId, prediction),
        }),
      );
    },
  });
  server.on('request', app);
  const sweep = setInterval(() => {
    idempotency.sweep().catch((err) => logger.warn({ err }, 'idempotency sweep failed'));
  }, 3600_000);
  sweep.unref();

  return {
    config,
    db,
    tasks,
    auth,
    app,
    server,
    runner,
    realtime,
    relay,
    provider,
    outputs,
    demoStandin,
    baseUrl,
    listen: () =>
      new Promise((resolve, reject) => {
        server.once('error', reject);
        server.listen(config.port, config.host, () => {
          const a = server.address() as AddressInfo;
          const host = a.family === 'IPv6' ? `[${a.address}]` : a.address;
          listenUrl = `http://${host}:${a.port}`;
          if (config.runner.enabled) runner.start();
          resolve(listenUrl);
        });
      }),
    close: async () => {
      clearInterval(sweep);
      metrics.close();
      await runner.stop(10_000);
      await realtime.drain({ batchSize: 500, intervalMs: 20 });
      await realtime.close();
      await relay.close();
      await bus?.newWork.close();
      await new Promise<void>((resolve) => {
        server.close(() => resolve());
        server.closeAllConnections?.();
      });
      await provider.close();
      await demoStandin?.close();
      if (ownDb) await db.destroy();
    },
  };
}

/** CHECK_ORIGIN: a list of allowed browser origins; unset means the gateway's own host (Phoenix's default). */
function originCheck(list: string[] | undefined): CheckOrigin {
  return list && list.length ? list : true;
}
