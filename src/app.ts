import http from 'node:http';
import path from 'node:path';
import type { AddressInfo } from 'node:net';
import type { Express } from 'express';
import { Authenticator, TokenSigner } from './auth/tokens';
import type { Config } from './config';
import { migrate, openDatabase, type Db } from './db';
import { createHttpApp } from './http/app';
import { IdempotencyKeys } from './http/idempotency';
import type { Logger } from './log';
import { ModelRegistry } from './tasks/models';
import { TaskService } from './tasks/service';

export interface GatewayOptions {
  config: Config;
  logger: Logger;
  /** A database to use instead of opening one from the config (tests). */
  db?: Db;
  registry?: ModelRegistry;
  now?: () => Date;
}

/** The running gateway's parts, for main.ts and for tests. */
export interface Gateway {
  config: Config;
  db: Db;
  tasks: TaskService;
  auth: Authenticator;
  app: Express;
  server: http.Server;
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
    opts.db ??
    openDatabase({ databaseUrl: config.databaseUrl, pgliteDir: path.join(config.dataDir, 'pglite') });
  const applied = await migrate(db);
  if (applied.length) logger.info({ migrations: applied }, 'database migrated');

  const registry = opts.registry ?? new ModelRegistry();
  const tasks = new TaskService(db, registry, logger, { now: opts.now });
  const auth = new Authenticator(
    config.authSecret ? new TokenSigner(config.authSecret, config.tokenMaxTtlSeconds) : undefined,
  );
  const idempotency = new IdempotencyKeys(db, opts.now);
  const app = createHttpApp({ db, tasks, auth, idempotency, logger });
  const server = http.createServer(app);
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
    listen: () =>
      new Promise((resolve, reject) => {
        server.once('error', reject);
        server.listen(config.port, config.host, () => {
          const a = server.address() as AddressInfo;
          const host = a.family === 'IPv6' ? `[${a.address}]` : a.address;
          resolve(`http://${host}:${a.port}`);
        });
      }),
    close: async () => {
      clearInterval(sweep);
      await new Promise<void>((resolve) => {
        server.close(() => resolve());
        server.closeAllConnections?.();
      });
      if (ownDb) await db.destroy();
    },
  };
}
