import type http from 'node:http';
import path from 'node:path';
import type { AddressInfo } from 'node:net';
import type { Express } from 'express';
import { Authenticator, TokenSigner } from './auth/tokens';
import type { UserAssigns } from './channels/task-channel';
import type { TaskEventRelay } from './channels/task-events';
import type { Config } from './config';
import { migrate, openDatabase, type Db } from './db';
import type { Bus } from './bus/bus';
import { newWorkSignal } from './bus/adapters';
import { openBus } from './bus/open';
import { TaskCreationLimit } from './db/rate-limit';
import { Closers } from './gateway/closers';
import type { PartContext } from './gateway/context';
import { createGatewayHttp } from './gateway/http';
import { configuredModels, startProviders } from './gateway/provider';
import { startTaskRealtime } from './gateway/realtime';
import { createRunner, type RunnerOverrides } from './gateway/runner';
import { openOutputStore, startRetention } from './gateway/storage';
import { createHttpServer, limitConnectionsPerAddress } from './http/connections';
import type { Logger } from './log';
import type { Standin } from './providers/replicate/standin';
import type { ProviderPace } from './providers/http/pace';
import type { RunningProvider } from './providers/plugin';
import type { Provider } from './providers/types';
import type { RealtimeServer } from './realtime';
import type { TaskRunner } from './runner/runner';
import type { OutputStore } from './storage/outputs';
import { requestBase } from './storage/urls';
import { ModelRegistry } from './tasks/models';
import { TaskService } from './tasks/service';

export interface GatewayOptions {
  config: Config;
  logger: Logger;
  /** A database to use instead of opening one from the config (tests); the caller closes it. */
  db?: Db;
  registry?: ModelRegistry;
  now?: () => Date;
  /** Runner settings for tests (poll interval, lease, retry policy). */
  runner?: RunnerOverrides;
  /** Provider client settings for tests (retry timing). */
  providerRetry?: { attempts: number; baseMs: number; maxMs: number };
  /** A bus to use instead of the configured one (tests: the in-memory bus); the gateway starts and closes it. */
  bus?: Bus;
  /** The window of the providers' budgets, a minute unless a test scales it down. */
  providerBudgetWindowMs?: number;
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
  /** The cluster bus, started (none with embedded PGlite and no BUS_URL). */
  bus: Bus | undefined;
  /** The providers started, by id (`replicate`, `openai`). */
  providers: ReadonlyMap<string, RunningProvider>;
  /** The Replicate provider's client, with its pace (tests count its 429s). */
  provider: Provider & { readonly pace?: ProviderPace };
  outputs: OutputStore;
  /** The in-process Replicate stand-in, in demo mode. */
  demoStandin: Standin | undefined;
  /** PUBLIC_URL, or where this process listens (output URLs use the request's Host when PUBLIC_URL is unset). */
  baseUrl(): string;
  /** Listen on config.port/host (0 picks a free port); resolves to the base URL. Starts no work. */
  listen(): Promise<string>;
  /** Listen, then start the runner if RUNNER_ENABLED (what main.ts does); resolves to the base URL. */
  start(): Promise<string>;
  /** Stop every part, last started first: the runner, sockets, HTTP, provider, database. */
  close(): Promise<void>;
}

/** The composition root: builds the gateway from its parts, each registering how it stops. */
export async function createGateway(opts: GatewayOptions): Promise<Gateway> {
  const { config } = opts;
  const ctx: PartContext = { config, logger: opts.logger, now: opts.now, closers: new Closers(opts.logger) };
  try {
    const db = await openGatewayDatabase(ctx, opts.db);
    const registry = opts.registry ?? new ModelRegistry(configuredModels(config));
    const tasks = new TaskService(db, registry, ctx.logger, { now: ctx.now });
    const auth = new Authenticator(
      config.authSecret ? new TokenSigner(config.authSecret, config.tokenMaxTtlSeconds) : undefined,
    );
    const provider = await startProviders(ctx, {
      tasks,
      retry: opts.providerRetry,
      db,
      budgetWindowMs: opts.providerBudgetWindowMs,
    });
    const server = createHttpServer(config.connections);
    limitConnectionsPerAddress(server, config.connections.maxPerAddress, ctx.logger);
    ctx.closers.push('http server', () => closeServer(server));
    let listenUrl = `http://${config.host}:${config.port}`;
    const baseUrl = () => config.publicUrl ?? listenUrl;
    const outputs = openOutputStore(ctx);
    // Stored output URLs are relative; each answer makes them absolute for the client that asked.
    const baseUrlOf = (headers: http.IncomingHttpHeaders) => requestBase(config.publicUrl, headers, false, baseUrl);
    const bus = opts.bus ?? openBus(db, config.bus, ctx.logger);
    // Closed after everything registered later (the realtime layer says goodbye over it).
    if (bus) ctx.closers.push('bus', () => bus.close());
    const newWork = bus ? newWorkSignal(bus) : undefined;
    const runner = createRunner(ctx, { db, tasks, provider, outputs, overrides: opts.runner, newWork });
    const taskLimit = new TaskCreationLimit(db, config.rateLimitTasksPerMinute);
    const { realtime, relay } = await startTaskRealtime(ctx, { server, tasks, auth, bus, taskLimit, baseUrlOf });
    // Started once every topic has its handler: the first connection runs the reconnect hooks.
    await bus?.start();
    const app = createGatewayHttp(ctx, {
      db,
      tasks,
      registry,
      auth,
      realtime,
      runner,
      provider,
      outputs,
      taskLimit,
      bus,
      baseUrlOf,
    });
    server.on('request', app);
    startRetention(ctx, tasks.store, outputs);
    // Registered last, so stopped first: no new work while the rest shuts down.
    ctx.closers.push('runner', () => runner.stop(10_000));

    const listen = async () => (listenUrl = await listenOn(server, config));
    return {
      ...{ config, db, tasks, auth, app, server, runner, realtime, relay, bus, outputs, baseUrl, listen },
      providers: provider.running,
      provider: replicateOf(provider.running),
      demoStandin: provider.demoStandin,
      start: async () => {
        const url = await listen();
        if (config.runner.enabled) runner.start();
        return url;
      },
      close: () => ctx.closers.closeAll(),
    };
  } catch (err) {
    await ctx.closers.closeAll().catch(() => {});
    throw err;
  }
}

/** The Replicate client with its pace (what tests that count its 429s look at). */
function replicateOf(running: ReadonlyMap<string, RunningProvider>): Gateway['provider'] {
  const r = running.get('replicate');
  if (!r) throw new Error('the replicate provider is not running');
  return r.client as Gateway['provider'];
}

/** The database given (the caller's to close), or the configured one, migrated. */
async function openGatewayDatabase(ctx: PartContext, given: Db | undefined): Promise<Db> {
  let db = given;
  if (!db) {
    const own = openDatabase({
      databaseUrl: ctx.config.databaseUrl,
      pgliteDir: path.join(ctx.config.dataDir, 'pglite'),
    });
    ctx.closers.push('database', () => own.destroy());
    db = own;
  }
  const applied = await migrate(db);
  if (applied.length) ctx.logger.info({ migrations: applied }, 'database migrated');
  return db;
}

function listenOn(server: http.Server, config: Config): Promise<string> {
  return new Promise((resolve, reject) => {
    server.once('error', reject);
    server.listen(config.port, config.host, () => {
      const a = server.address() as AddressInfo;
      const host = a.family === 'IPv6' ? `[${a.address}]` : a.address;
      resolve(`http://${host}:${a.port}`);
    });
  });
}

/**
 * Stops taking connections and closes the idle ones; requests still being answered get
 * `graceMs` to finish (behind a balancer, a request cut short is a 502), then are cut.
 */
function closeServer(server: http.Server, graceMs = 1000): Promise<void> {
  return new Promise<void>((resolve) => {
    const cut = setTimeout(() => server.closeAllConnections(), graceMs);
    server.close(() => {
      clearTimeout(cut);
      resolve();
    });
    server.closeIdleConnections();
  });
}
