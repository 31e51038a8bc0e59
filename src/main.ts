import cluster from 'node:cluster';
import { createGateway } from './app';
import { ConfigError, loadConfig, type Config } from './config';
import { createLogger } from './log';
import { migrate, openDatabase } from './db';
import { startDemoStandin } from './gateway/provider';
import type { Standin } from './providers/replicate/standin';
import { ModelRegistry } from './tasks/models';
import { TaskService } from './tasks/service';

/** Start the gateway from the environment. */
export async function main(): Promise<void> {
  let config: Config;
  try {
    config = loadConfig();
  } catch (err) {
    if (err instanceof ConfigError) {
      process.stderr.write(`pyre: ${err.message}\n`);
      process.exit(78); // EX_CONFIG
    }
    throw err;
  }
  const logger = createLogger({ level: config.logLevel });
  if (!config.authSecret && cluster.isPrimary) {
    logger.warn(
      { mode: 'open', host: config.host },
      '!!! OPEN MODE: AUTH_SECRET is unset, so every caller is the user "local" and pyre listens on loopback only. Set AUTH_SECRET to require tokens. !!!',
    );
  }
  if (config.workers > 1 && cluster.isPrimary) return runPrimary(config, logger);
  const gateway = await createGateway({ config, logger });
  const url = await gateway.start();
  logger.info(
    { url, database: config.databaseUrl ? 'postgresql' : `pglite (${config.dataDir})`, demo_mode: config.demoMode },
    `pyre listening on ${url}`,
  );

  let stopping = false;
  const stop = async (signal: string) => {
    if (stopping) return;
    stopping = true;
    logger.info({ signal }, 'shutting down');
    const force = setTimeout(() => process.exit(1), 30_000);
    force.unref();
    try {
      await gateway.close();
      process.exit(0);
    } catch (err) {
      logger.error({ err }, 'shutdown failed');
      process.exit(1);
    }
  };
  process.on('SIGINT', () => void stop('SIGINT'));
  process.on('SIGTERM', () => void stop('SIGTERM'));
}

/**
 * WORKERS=N: N gateway processes share the port (Node's cluster module); tasks
 * and broadcasts cross between them through PostgreSQL, as between machines.
 * A worker that dies is replaced; SIGTERM drains them all.
 */
async function runPrimary(config: Config, logger: ReturnType<typeof createLogger>): Promise<void> {
  let stopping = false;
  const workers = config.workers;
  // Migrate once, here, before any worker starts (workers racing to create knex's tables fail).
  // Demo mode: one stand-in for all workers, so any worker can resume another's prediction.
  let standin: Standin | undefined;
  const db = openDatabase({ databaseUrl: config.databaseUrl });
  try {
    const applied = await migrate(db);
    if (applied.length) logger.info({ migrations: applied }, 'database migrated');
    if (config.demoMode) standin = await startDemoStandin(logger, new TaskService(db, new ModelRegistry(), logger));
  } finally {
    await db.destroy();
  }
  const workerEnv: Record<string, string> = standin
    ? {
        REPLICATE_API_TOKEN: standin.token,
        REPLICATE_BASE_URL: standin.url,
        REPLICATE_WEBHOOK_SECRET: standin.webhookSecret,
      }
    : {};
  logger.info({ workers }, `starting ${workers} worker processes`);
  for (let i = 0; i < workers; i++) cluster.fork(workerEnv);
  cluster.on('exit', (worker, code, signal) => {
    if (stopping) return;
    logger.error({ pid: worker.process.pid, code, signal }, 'worker died; starting another');
    setTimeout(() => cluster.fork(workerEnv), 1000);
  });
  const stop = (signal: NodeJS.Signals) => {
    if (stopping) return;
    stopping = true;
    logger.info({ signal }, 'stopping workers');
    for (const w of Object.values(cluster.workers ?? {})) w?.process.kill('SIGTERM');
    const force = setTimeout(() => process.exit(1), 35_000);
    force.unref();
    cluster.on('exit', () => {
      if (Object.keys(cluster.workers ?? {}).length === 0)
        void (standin?.close() ?? Promise.resolve()).finally(() => process.exit(0));
    });
  };
  process.on('SIGINT', () => stop('SIGINT'));
  process.on('SIGTERM', () => stop('SIGTERM'));
}

if (require.main === module) {
  main().catch((err) => {
    process.stderr.write(`pyre: failed to start: ${err instanceof Error ? err.stack : String(err)}\n`);
    process.exit(1);
  });
}
