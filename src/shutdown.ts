import cluster from 'node:cluster';
import os from 'node:os';
import type { Gateway } from './app';
import type { Logger } from './log';

/**
 * How long a stop may take. Docker (and Compose) send SIGKILL 10 s after SIGTERM by default,
 * so everything fits in 9 s: running tasks get 5 s to finish, then they are released (their
 * lease is given up, so another process, or this one at its next start, resumes them: a
 * prediction already made on the provider is followed, never made twice).
 */
export const SHUTDOWN_BUDGET = { runnerGraceMs: 5_000, hardLimitMs: 9_000 };

/** What a stop did; a WORKERS=N worker sends it to its primary, which adds them up for its last line. */
export interface StoppedSummary {
  tasks_finished: number;
  tasks_released: number;
  sockets_closed: number;
  longpoll_sessions_closed: number;
}

/** A worker's summary to its primary, sent before the worker exits (no-op outside a cluster worker). */
function tellPrimary(summary: StoppedSummary): Promise<void> {
  if (!cluster.isWorker || !process.send) return Promise.resolve();
  return new Promise((resolve) => {
    process.send!({ pyre: 'stopped', summary }, undefined, {}, () => resolve());
  });
}

/** `N task(s) released to resume later, …`: the end of the last line of a stop. */
export function stoppedLine(s: StoppedSummary): string {
  return (
    `${s.tasks_released} task(s) released to resume later, ${s.sockets_closed} socket(s) and ` +
    `${s.longpoll_sessions_closed} long-poll session(s) closed`
  );
}

const exitCodeFor = (signal: NodeJS.Signals) => 128 + (os.constants.signals[signal] ?? 15);

/**
 * SIGTERM / SIGINT: a graceful stop that says what it did and ends with "stopped". A second
 * signal stops at once (tasks are safe: they resume).
 */
export function stopOnSignals(gateway: Gateway, logger: Logger, budget = SHUTDOWN_BUDGET): void {
  let stopping = false;
  const onSignal = (signal: NodeJS.Signals) => {
    if (stopping) {
      logger.warn(
        { signal },
        'second signal: stopping now; tasks that were still running resume at the next start (or on another process)',
      );
      process.exit(exitCodeFor(signal));
    }
    stopping = true;
    void stop(signal);
  };
  const stop = async (signal: NodeJS.Signals) => {
    const started = Date.now();
    const running = gateway.runner.activeCount;
    const { sockets, transports } = gateway.realtime.stats();
    const longpollSessions = transports.longpoll?.sessions ?? 0;
    logger.info(
      { signal, tasks_running: running, sockets, longpoll_sessions: longpollSessions },
      `shutting down: ${running} running task(s) get ${budget.runnerGraceMs / 1000} s to finish, ` +
        'then are released to resume later; send the signal again to stop at once',
    );
    const force = setTimeout(() => {
      logger.error(`shutdown did not finish within ${budget.hardLimitMs / 1000} s; exiting anyway`);
      process.exit(1);
    }, budget.hardLimitMs);
    force.unref();
    try {
      // The runner first, then a look at what became of the tasks it held: finished, or
      // released unfinished (gateway.close() stops the runner again, which is then a no-op).
      const held = await heldTasks(gateway);
      await gateway.runner.stop(budget.runnerGraceMs);
      const released = (await gateway.tasks.store.unfinishedAmong(held)).length;
      await gateway.close();
      const summary: StoppedSummary = {
        tasks_finished: held.length - released,
        tasks_released: released,
        sockets_closed: sockets,
        longpoll_sessions_closed: longpollSessions,
      };
      logger.info({ ...summary, ms: Date.now() - started }, `stopped: ${stoppedLine(summary)}`);
      await tellPrimary(summary);
      process.exit(0);
    } catch (err) {
      logger.error({ err }, 'shutdown failed');
      process.exit(1);
    }
  };
  process.on('SIGINT', onSignal);
  process.on('SIGTERM', onSignal);
}

/** The ids of the unfinished tasks this process's runner holds a lease on. */
async function heldTasks(gateway: Gateway): Promise<string[]> {
  return gateway.tasks.store.unfinishedLeasedTo(gateway.runner.owner);
}
