import os from 'node:os';
import { randomBytes } from 'node:crypto';
import type { Db } from '../db';
import type { Logger } from '../log';
import type { Prediction, ProviderSet } from '../providers/types';
import type { TaskService } from '../tasks/service';
import { outputsText } from '../tasks/events';
import { TERMINAL, type TaskEvent, type TaskRow } from '../tasks/task';
import type { OutputStore } from '../storage/outputs';
import { DatabaseWatch } from './database';
import { DEFAULT_LIMITS, DEFAULT_POLLING, DEFAULT_RETRY, type RetryPolicy } from './policy';
import { settle, type SettleDeps } from './settle';
import { TaskRun, type TaskRunDeps, type Wakeup } from './task-run';
import { TaskWriter } from './task-writer';
import { AnnouncedText, Released, type MayWrite } from './text-stream';

/**
 * Tells the runners of other processes that there is new work, after the commit (as
 * graphile-worker does), on the cluster bus's `new_work` topic (src/bus/adapters.ts); the claim
 * timer stays on as the safety net. Absent with no bus (embedded PGlite: one process).
 */
export interface NewWorkSignal {
  listen(handler: (msgs: number[]) => void): Promise<void>;
  send(msg: number): void;
}

export interface RunnerOptions {
  db: Db;
  tasks: TaskService;
  /** The providers by id; a task runs on the one its row names. */
  providers: ProviderSet;
  outputs: OutputStore;
  logger: Logger;
  /** This process's name in leases. */
  owner?: string;
  /** Predictions this process follows at once (RUNNER_CONCURRENCY). */
  concurrency?: number;
  /** Predictions in flight over all processes on the database (RUNNER_GLOBAL_CONCURRENCY). */
  globalConcurrency?: number;
  /** A user's predictions in flight over all processes (RUNNER_USER_CONCURRENCY). */
  userConcurrency?: number;
  /** A model's predictions in flight over all processes (RUNNER_MODEL_CONCURRENCY). */
  modelConcurrency?: number;
  leaseMs?: number;
  /** How often to look for work that no signal announces (retries coming due, lapsed leases). */
  claimIntervalMs?: number;
  /** The first polls' interval; it grows with the prediction's age (see pollDelayMs). */
  pollIntervalMs?: number;
  /** The longest interval between two polls of a prediction. */
  pollMaxIntervalMs?: number;
  /** With webhooks, polling is the safety net: at least this far apart. */
  webhookPollIntervalMs?: number;
  retry?: RetryPolicy;
  /**
   * How long a canceled task waits for its prediction to confirm the cancel (reach an end)
   * before the task ends canceled anyway and is no longer followed. Default 60 s.
   */
  cancelGraceMs?: number;
  /**
   * The webhook URL for a task on `provider` (when PUBLIC_URL is set and the provider sends
   * webhooks); polling stays on as a safety net.
   */
  webhookUrl?: (taskId: string, provider: string) => string | undefined;
  /** New work announced across processes (PostgreSQL); see NewWorkSignal. */
  newWork?: NewWorkSignal;
  now?: () => Date;
}

type Settings = Required<Omit<RunnerOptions, 'webhookUrl' | 'owner' | 'newWork'>> &
  Pick<RunnerOptions, 'webhookUrl' | 'newWork'>;

interface Running extends Wakeup {
  abort: AbortController;
  /** Poll now instead of waiting (a webhook arrived, with the prediction as it was sent). */
  nudge: (prediction?: Prediction) => void;
  /** Whether the run asked the runner to watch its row (see Wakeup.watch). */
  watched: boolean;
}

/**
 * A run's nudge: one that comes while the run is busy (mid-request) is kept for its next wait.
 * The prediction a webhook delivered is kept too, the latest one, for the run to use instead of a poll.
 */
function nudgeable(abort: AbortController): Running {
  let wake: (() => void) | undefined;
  let nudged = false;
  let delivered: Prediction | undefined;
  const running: Running = {
    abort,
    watched: false,
    watch: (on) => {
      running.watched = on;
    },
    nudge: (prediction) => {
      if (prediction) delivered = prediction;
      if (wake) wake();
      else nudged = true;
    },
    onWake: (w) => {
      if (nudged) {
        nudged = false;
        return w();
      }
      wake = w;
      return () => {
        wake = undefined;
      };
    },
    delivered: () => {
      const p = delivered;
      delivered = undefined;
      return p;
    },
  };
  return running;
}

const isNewWork = (events: TaskEvent[]) => events.some((e) => e.event === 'status' && e.payload.status === 'queued');

/**
 * Runs tasks on the provider, each to an honest end exactly once. Work is claimed
 * from the database (FOR UPDATE SKIP LOCKED, with a renewed lease), so any number
 * of gateway processes on one PostgreSQL share it. Each claimed task is its own run
 * (a prediction followed costs a timer and an occasional request); the claim bounds
 * how many are in flight: in this process, and over all processes globally, per user
 * and per model, fair by user. A task whose lease lapsed is taken over; one that has
 * a prediction resumes it instead of creating another.
 */
export class TaskRunner {
  readonly owner: string;
  private readonly running = new Map<string, Running>();
  /** The runs in progress, to wait for at stop. */
  private readonly runs = new Set<Promise<void>>();
  private readonly opts: Settings;
  private readonly database: DatabaseWatch;
  private claimTimer: NodeJS.Timeout | undefined;
  private leaseTimer: NodeJS.Timeout | undefined;
  private watchTimer: NodeJS.Timeout | undefined;
  private watching = false;
  private claiming: Promise<void> | undefined;
  private stopped = true;
  private wakeAgain = false;

  constructor(options: RunnerOptions) {
    this.owner = options.owner ?? `${os.hostname()}:${process.pid}:${randomBytes(3).toString('hex')}`;
    this.opts = {
      ...DEFAULT_LIMITS,
      ...DEFAULT_POLLING,
      leaseMs: 30_000,
      claimIntervalMs: 1000,
      retry: DEFAULT_RETRY,
      cancelGraceMs: 60_000,
      now: () => new Date(),
      ...(Object.fromEntries(Object.entries(options).filter(([, v]) => v !== undefined)) as RunnerOptions),
    };
    this.database = new DatabaseWatch(this.opts.logger);
    // New work, created in this process (also when this runner is not started: an API-only
    // process still tells the others).
    options.tasks.onEvents((events) => {
      if (!isNewWork(events)) return;
      this.wake();
      this.opts.newWork?.send(0);
    });
  }

  start(): void {
    if (!this.stopped) return;
    this.stopped = false;
    this.claimTimer = setInterval(() => this.wake(true), this.opts.claimIntervalMs);
    this.claimTimer.unref();
    this.leaseTimer = setInterval(() => void this.renewLeases(), Math.max(100, Math.floor(this.opts.leaseMs / 3)));
    this.leaseTimer.unref();
    this.watchTimer = setInterval(() => void this.watchRows(), this.opts.pollIntervalMs);
    this.watchTimer.unref();
    this.opts.newWork
      ?.listen(() => this.wake())
      .catch((err) => this.opts.logger.warn({ err: String(err) }, 'not told of new work by other processes; polling'));
    this.wake();
  }

  /**
   * Look for work now (a task was created, or the timer ticked). While the database is
   * unreachable only the timer's ticks try (each claim is the probe that ends the pause).
   */
  wake(tick = false): void {
    if (this.stopped || (this.database.unreachable && !tick)) return;
    if (this.claiming) {
      this.wakeAgain = true;
      return;
    }
    this.claiming = this.claim().finally(() => {
      this.claiming = undefined;
      const again = this.wakeAgain;
      this.wakeAgain = false;
      if (again) this.wake();
    });
  }

  /** A provider told us (webhook) that a prediction changed: poll it now, or sync it here. */
  async predictionChanged(taskId: string, prediction: Prediction, provider = 'replicate'): Promise<void> {
    const local = this.running.get(taskId);
    if (local) return local.nudge(prediction);
    const row = await this.opts.tasks.find(taskId);
    if (!row || row.provider !== provider || row.prediction_id !== prediction.id || TERMINAL.has(row.status)) return;
    const client = this.opts.providers.get(row.provider);
    if (!client) return;
    // A run follows it, here (claimed while we read) or in another process (a webhook may land
    // on any process): its polls will see this. Syncing here too would race its stream.
    if (!this.unheld(row)) return this.running.get(taskId)?.nudge();
    const model = this.opts.tasks.registry.get(row.model);
    if (!model) return;
    // Continue the text deltas already announced, so that they still join to the final text.
    // Every write checks again, under the row lock, that no run has claimed the task meanwhile.
    const { tasks } = this.opts;
    const text = outputsText(model.taskType) ? await AnnouncedText.load({ tasks, taskId, may: this.unheld }) : null;
    const deps = { ...this.opts, openOutput: client.openOutput.bind(client) };
    const writer = new TaskWriter(deps, { id: taskId, model }, this.unheld, text);
    await writer.sync({ prediction, streaming: false, signal: new AbortController().signal });
  }

  /** A webhook's writes for a task: only while no run holds it, here or elsewhere. */
  private readonly unheld: MayWrite = (cur) => {
    if (this.running.has(cur.id)) return false;
    const leasedElsewhere =
      cur.lease_owner !== null &&
      cur.lease_owner !== this.owner &&
      cur.lease_expires_at !== null &&
      new Date(cur.lease_expires_at) > this.opts.now();
    return !leasedElsewhere;
  };

  /** Stop claiming; let running work finish up to the deadline; release the rest. */
  async stop(deadlineMs = 10_000): Promise<void> {
    if (this.stopped) return;
    this.stopped = true;
    clearInterval(this.claimTimer);
    await this.claiming;
    const timedOut = await Promise.race([
      this.idle().then(() => false),
      new Promise<boolean>((r) => setTimeout(() => r(true), deadlineMs).unref()),
    ]);
    if (timedOut) {
      for (const r of this.running.values()) r.abort.abort(new Released('shutting down'));
      await this.idle();
    }
    clearInterval(this.leaseTimer);
    clearInterval(this.watchTimer);
  }

  get activeCount(): number {
    return this.running.size;
  }

  /** Resolves when no run is in progress. */
  private async idle(): Promise<void> {
    while (this.runs.size) await Promise.allSettled([...this.runs]);
  }

  /** Lease what this process has room for, and run it. Never rejects. */
  private async claim(): Promise<void> {
    const free = this.opts.concurrency - this.running.size;
    if (free <= 0) return;
    const now = this.opts.now();
    let rows: TaskRow[];
    try {
      rows = await this.opts.tasks.store.claim({
        owner: this.owner,
        now,
        leaseUntil: new Date(now.getTime() + this.opts.leaseMs),
        running: [...this.running.keys()],
        limit: free,
        global: this.opts.globalConcurrency,
        perUser: this.opts.userConcurrency,
        perModel: this.opts.modelConcurrency,
      });
    } catch (err) {
      if (!this.database.failed(err, 'claiming tasks')) this.opts.logger.error({ err }, 'claiming tasks failed');
      return;
    }
    this.database.answered();
    for (const row of rows) this.begin(row);
  }

  /** Start a claimed task's run: its own promise, no slot in a pool (the claim bounds how many). */
  private begin(row: TaskRow): void {
    const entry = nudgeable(new AbortController());
    this.running.set(row.id, entry);
    const log = this.opts.logger.child({ task_id: row.id, model: row.model });
    const run: Promise<void> = this.execute(row, entry, log)
      .catch((err) => log.error({ err }, 'task run crashed'))
      .finally(() => {
        this.running.delete(row.id);
        this.runs.delete(run);
        if (!this.stopped) this.wake();
      });
    this.runs.add(run);
  }

  /** Run a claimed task and apply the outcome. */
  private async execute(row: TaskRow, entry: Running, log: Logger): Promise<void> {
    const deps: TaskRunDeps & SettleDeps = { ...this.opts, owner: this.owner };
    const outcome = await new TaskRun(deps, row, entry.abort.signal, entry, log).run();
    try {
      await settle(deps, row.id, outcome, log);
    } catch (err) {
      if (!this.database.failed(err, 'settling a run')) throw err;
      // Not recorded: the lease lapses and the task is claimed again (its prediction resumed).
      log.warn({ outcome: outcome.kind }, 'could not record the end of a run; the lease hands the task back');
    }
  }

  /**
   * The row checks of the runs that asked for it (their streams stand for their polls), in one
   * query a poll interval: a run whose task was asked to cancel, or ended, is woken to act on it.
   */
  private async watchRows(): Promise<void> {
    if (this.watching) return;
    const ids = [...this.running].filter(([, r]) => r.watched).map(([id]) => id);
    if (ids.length === 0) return;
    this.watching = true;
    try {
      for (const id of await this.opts.tasks.store.needingAction(ids)) this.running.get(id)?.nudge();
      this.database.answered();
    } catch (err) {
      if (!this.database.failed(err, 'watching running tasks'))
        this.opts.logger.warn({ err }, 'watching running tasks failed');
    } finally {
      this.watching = false;
    }
  }

  private async renewLeases(): Promise<void> {
    if (this.running.size === 0) return;
    const ids = [...this.running.keys()];
    try {
      const renewed = await this.opts.tasks.store.renewLeases({
        ids,
        owner: this.owner,
        until: new Date(this.opts.now().getTime() + this.opts.leaseMs),
      });
      this.database.answered();
      const kept = new Set(renewed);
      for (const id of ids) {
        const r = this.running.get(id);
        // Ended meanwhile (lease cleared by a terminal status) or taken by another process.
        if (r && !kept.has(id)) {
          const cur = await this.opts.tasks.find(id);
          if (cur && !TERMINAL.has(cur.status) && cur.lease_owner !== this.owner)
            r.abort.abort(new Released('lease lost'));
        }
      }
    } catch (err) {
      if (!this.database.failed(err, 'renewing leases')) this.opts.logger.warn({ err }, 'lease renewal failed');
    }
  }
}
