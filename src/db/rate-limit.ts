import type { Db } from './index';

/** A task creation refused by the per-user limit; `retryAfterSeconds` says when one is allowed again. */
export class RateLimitedError extends Error {
  constructor(
    readonly perMinute: number,
    readonly retryAfterSeconds: number,
  ) {
    super(`rate limited: at most ${perMinute} task submissions a minute; retry in ${retryAfterSeconds} s`);
    this.name = 'RateLimitedError';
  }
}

interface Waiter {
  resolve: () => void;
  reject: (err: unknown) => void;
}

/** A user's bucket after a take: how many of the asked creations it granted, and what is left. */
export interface Taken {
  user_id: string;
  granted: number;
  tokens: number;
}

/**
 * The take, as common table expressions ending in `grants` (user_id, granted, tokens), for a
 * statement of its own (TAKE_SQL) or inside another one (the task insert takes for its creates in
 * its own statement: see TaskStore.insertTaking). Parameters: `:asked`, `:burst`, `:rate`
 * (TaskCreationLimit.takeParams).
 *
 * One statement takes for every user of a batch (`:asked`: `[{user_id, n}]`, n creations each): each
 * user's bucket is refilled (on the database's clock), and gives as many whole tokens as it has,
 * up to the creations asked. A user without a bucket gets one, full, less what it grants. Rows
 * are locked (FOR UPDATE) before they are read, so concurrent takes of other processes queue on
 * the row and each sees the other's result. A bucket that another process created after this
 * statement's snapshot is not returned (ON CONFLICT DO NOTHING): its user is simply asked again.
 *
 * In TAKE_SQL, `synchronous_commit` is off for that statement's transaction: its commit does not wait for
 * the WAL to reach the disk (a bucket is not worth an fsync on every create's path). Nothing
 * that matters is lost to a crash: WAL is written in order, so the commit of a task created
 * after this take flushes the take with it; only takes whose creates never committed can be lost,
 * which gives their user those few tokens back.
 */
export const TAKE_CTES = `
asked AS (
  SELECT a.user_id, a.n FROM json_to_recordset(:asked::json) AS a(user_id text, n int)
),
current AS (
  SELECT l.user_id, asked.n,
    LEAST(:burst::float8,
      l.tokens + EXTRACT(EPOCH FROM (clock_timestamp() - l.refilled_at))::float8 * :rate::float8) AS refilled
  FROM task_rate_limits l JOIN asked ON asked.user_id = l.user_id
  FOR UPDATE OF l
),
taken AS (
  UPDATE task_rate_limits l
  SET tokens = current.refilled - LEAST(current.n, floor(current.refilled)), refilled_at = clock_timestamp()
  FROM current WHERE l.user_id = current.user_id
  RETURNING l.user_id, LEAST(current.n, floor(current.refilled))::int AS granted, l.tokens
),
created AS (
  INSERT INTO task_rate_limits (user_id, tokens, refilled_at)
  SELECT asked.user_id, :burst::float8 - LEAST(asked.n, floor(:burst::float8)), clock_timestamp() FROM asked
  WHERE NOT EXISTS (SELECT 1 FROM current WHERE current.user_id = asked.user_id)
  ON CONFLICT (user_id) DO NOTHING
  RETURNING user_id, tokens
),
grants AS (
  SELECT user_id, granted, tokens FROM taken
  UNION ALL
  SELECT created.user_id, LEAST(asked.n, floor(:burst::float8))::int, created.tokens
  FROM created JOIN asked ON asked.user_id = created.user_id
)`;

const TAKE_SQL = `
WITH settings AS (SELECT set_config('synchronous_commit', 'off', true)),
${TAKE_CTES.replace(') AS a(user_id text, n int)', ') AS a(user_id text, n int), settings')}
SELECT user_id, granted, tokens FROM grants`;

/**
 * The task-creation limit, per user, for the whole cluster: a token bucket per user in the
 * database (`task_rate_limits`), refilled at `perMinute` a minute up to `burst`, taken by one
 * atomic statement on the database's clock, so every process and both creation paths (REST and a
 * channel's `*_generate`) draw from the same bucket. `perMinute` 0 turns it off.
 *
 * Takes are grouped like task inserts (GroupInsert): the takes that arrive in one turn of the
 * event loop, and while a statement runs, go together into the next statement, which takes for
 * all their users at once. A create costs a share of one round trip, not a statement of its own.
 */
export class TaskCreationLimit {
  readonly burst: number;
  readonly perSecond: number;
  private waiting = new Map<string, Waiter[]>();
  private scheduled = false;
  private running = false;

  constructor(
    private readonly db: Db,
    readonly perMinute: number,
    burst = Math.max(10, Math.ceil(perMinute / 6)),
  ) {
    this.burst = burst;
    this.perSecond = perMinute / 60;
  }

  get enabled(): boolean {
    return this.perMinute > 0;
  }

  /** Seconds until a bucket left with `tokens` holds a whole token again (a 429's Retry-After). */
  retryAfterSeconds(tokens: number): number {
    return Math.max(1, Math.ceil((1 - tokens) / this.perSecond));
  }

  /** The refusal of a creation by a bucket left with `tokens`. */
  refusal(tokens: number): RateLimitedError {
    return new RateLimitedError(this.perMinute, this.retryAfterSeconds(tokens));
  }

  /** The take for `asked` (n creations for each user) inside another statement: TAKE_CTES and its parameters. */
  insertTake(asked: Array<{ user_id: string; n: number }>): { ctes: string; params: Record<string, unknown> } {
    return { ctes: TAKE_CTES, params: this.takeParams(asked) };
  }

  /** The parameters of TAKE_CTES for `asked` (n creations for each user). */
  takeParams(asked: Array<{ user_id: string; n: number }>): { asked: string; burst: number; rate: number } {
    return { asked: JSON.stringify(asked), burst: this.burst, rate: this.perSecond };
  }

  /** Take one creation from `userId`'s bucket, or throw RateLimitedError. */
  take(userId: string): Promise<void> {
    if (!this.enabled) return Promise.resolve();
    return new Promise<void>((resolve, reject) => {
      const list = this.waiting.get(userId);
      if (list) list.push({ resolve, reject });
      else this.waiting.set(userId, [{ resolve, reject }]);
      this.schedule();
    });
  }

  private schedule(): void {
    if (this.scheduled || this.running) return;
    this.scheduled = true;
    // Let the takes already read in this turn of the event loop join the statement.
    setImmediate(() => {
      this.scheduled = false;
      void this.flush();
    });
  }

  private async flush(): Promise<void> {
    if (this.running || this.waiting.size === 0) return;
    this.running = true;
    const batch = this.waiting;
    this.waiting = new Map();
    try {
      const rows = await this.statement([...batch].map(([user_id, waiters]) => ({ user_id, n: waiters.length })));
      for (const row of rows) {
        const waiters = batch.get(row.user_id);
        if (!waiters) continue;
        batch.delete(row.user_id);
        const tokens = Number(row.tokens);
        waiters.forEach((w, i) => (i < row.granted ? w.resolve() : w.reject(this.refusal(tokens))));
      }
      // Buckets another process created meanwhile: those users are asked again, first.
      for (const [user, waiters] of batch) this.waiting.set(user, [...waiters, ...(this.waiting.get(user) ?? [])]);
    } catch (err) {
      for (const waiters of batch.values()) for (const w of waiters) w.reject(err);
    } finally {
      this.running = false;
      if (this.waiting.size) this.schedule();
    }
  }

  private async statement(asked: Array<{ user_id: string; n: number }>): Promise<Taken[]> {
    const result = await this.db.raw(TAKE_SQL, this.takeParams(asked));
    return (result as { rows: Taken[] }).rows;
  }
}
