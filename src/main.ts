import cluster from 'node:cluster';
import { randomBytes } from 'node:crypto';
import { createGateway } from './app';
import { ConfigError, loadConfig, type Config } from './config';
import { createLogger, resolveLogFormat, type Logger } from './log';
import { migrate, openDatabase } from './db';
import { startDemoStandin } from './gateway/provider';
import type { Standin } from './providers/replicate/standin';
import { ModelRegistry } from './tasks/models';
import { TaskService } from './tasks/service';
import { SHUTDOWN_BUDGET, stoppedLine, stopOnSignals, type StoppedSummary } from './shutdown';
import { waitForDatabase } from './db-wait';
import { checkListenAddress, explainStartupError, type StartupProblem } from './startup';

/** One line on stderr and the exit code: how every mistake a user can fix ends a start. */
function refuse(problem: StartupProblem): never {
  process.stderr.write(`pyre: cannot start: ${problem.message}\n`);
  process.exit(problem.exitCode);
}

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
  try {
    await start(config);
  } catch (err) {
    const problem = explainStartupError(err, config);
    if (problem) refuse(problem);
    throw err;
  }
}

async function start(config: Config): Promise<void> {
  // Before anything is said or done (migrations, the demo stand-in): the port must be free.
  if (cluster.isPrimary) {
    const busy = await checkListenAddress(config);
    if (busy) refuse(busy);
  }
  const logger = createLogger({
    level: config.logLevel,
    format: resolveLogFormat(config.logFormat),
    ...(cluster.isWorker ? { worker: cluster.worker!.id } : {}),
  });
  if (!config.authSecret && cluster.isPrimary) {
    logger.warn(
      { mode: 'open', host: config.host },
      '!!! OPEN MODE: AUTH_SECRET is unset, so every caller is the user "local" and pyre listens on loopback only. Set AUTH_SECRET to require tokens. !!!',
    );
  }
  if (config.databaseUrl && cluster.isPrimary) {
    // One clear line instead of a driver's stack trace; a database still coming up is waited for.
    const problem = await waitForDatabase(config.databaseUrl, logger, config.databaseWaitSeconds);
    if (problem) {
      const waited = problem.transient ? ` (gave up after ${config.databaseWaitSeconds} s; DATABASE_WAIT_SECONDS)` : '';
      logger.fatal(`cannot start: ${problem.message}${waited}`);
      process.stderr.write(`pyre: cannot start: ${problem.message}${waited}\n`);
      process.exit(problem.transient ? 69 : 78); // EX_UNAVAILABLE / EX_CONFIG
    }
  }
  if (config.workers > 1 && cluster.isPrimary) return runPrimary(config, logger);
  const gateway = await createGateway({ config, logger });
  const url = await gateway.start();
  logger.info(
    {
      url,
      database: config.databaseUrl ? 'postgresql' : `pglite (${config.dataDir})`,
      demo_mode: config.demoMode || config.sharedDemoStandin,
    },
    `pyre listening on ${url}`,
  );
  if (!config.publicUrl && !['127.0.0.1', '::1', 'localhost'].includes(config.host)) {
    logger.warn(
      { host: config.host },
      "PUBLIC_URL is unset: output file URLs are built from each request's Host header (http://<Host>/files/…, " +
        'https when X-Forwarded-Proto says so) and provider webhooks are off; set PUBLIC_URL to the address clients use',
    );
  }

  stopOnSignals(gateway, logger);
}

/**
 * WORKERS=N: N gateway processes share the port (Node's cluster module); tasks
 * and broadcasts cross between them through PostgreSQL, as between machines.
 * A worker that dies is replaced; SIGTERM drains them all.
 */
async function runPrimary(config: Config, logger: Logger): Promise<void> {
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
        PYRE_SHARED_DEMO_STANDIN: 'true',
      }
    : {};
  // Open mode: the workers sign long-poll sessions with one key, so any of them serves any session.
  if (!config.authSecret && !config.longpollSecret) workerEnv.LONGPOLL_SECRET = randomBytes(32).toString('hex');
  // Each worker says what it released as it stops; the last line adds them up.
  const stopped: StoppedSummary = {
    tasks_finished: 0,
    tasks_released: 0,
    sockets_closed: 0,
    longpoll_sessions_closed: 0,
  };
  cluster.on('message', (_worker, m: { pyre?: string; summary?: StoppedSummary }) => {
    if (m?.pyre !== 'stopped' || !m.summary) return;
    for (const k of Object.keys(stopped) as Array<keyof StoppedSummary>) stopped[k] += Number(m.summary[k]) || 0;
  });
  logger.info({ workers }, `starting ${workers} worker processes`);
  for (let i = 0; i < workers; i++) cluster.fork(workerEnv);
  cluster.on('exit', (worker, code, signal) => {
    if (stopping) return;
    logger.error({ pid: worker.process.pid, code, signal }, 'worker died; starting another');
    setTimeout(() => cluster.fork(workerEnv), 1000);
  });
  const stop = (signal: NodeJS.Signals) => {
    if (stopping) {
      // A second signal: the workers stop at once too (their tasks resume at the next start).
      logger.warn({ signal }, 'second signal: stopping workers now');
      for (const w of Object.values(cluster.workers ?? {})) w?.process.kill('SIGTERM');
      return;
    }
    stopping = true;
    logger.info({ signal }, 'stopping workers');
    for (const w of Object.values(cluster.workers ?? {})) w?.process.kill('SIGTERM');
    const force = setTimeout(() => process.exit(1), SHUTDOWN_BUDGET.hardLimitMs + 500);
    force.unref();
    cluster.on('exit', () => {
      if (Object.keys(cluster.workers ?? {}).length === 0)
        void (standin?.close() ?? Promise.resolve()).finally(() => {
          logger.info({ ...stopped, workers }, `stopped: ${stoppedLine(stopped)} (${workers} workers)`);
          process.exit(0);
        });
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
