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

/**
 * The task-creation limit, per user, for the whole cluster: a token bucket per user in the
 * database (`task_rate_limits`), refilled at `perMinute` a minute up to `burst`, taken by one
 * atomic statement on the database's clock, so every process and both creation paths (REST and a
 * channel's `*_generate`) draw from the same bucket. `perMinute` 0 turns it off.
 */
export class TaskCreationLimit {
  readonly burst: number;
  private readonly perSecond: number;

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

  /** Take one creation from `userId`'s bucket, or throw RateLimitedError. */
  async take(userId: string): Promise<void> {
    if (!this.enabled) return;
    const refilled = `LEAST(:burst::float8, task_rate_limits.tokens
        + EXTRACT(EPOCH FROM (clock_timestamp() - task_rate_limits.refilled_at))::float8 * :rate::float8)`;
    const taken = await this.db.raw(
      `INSERT INTO task_rate_limits AS task_rate_limits (user_id, tokens, refilled_at)
       VALUES (:user, :burst::float8 - 1, clock_timestamp())
       ON CONFLICT (user_id) DO UPDATE SET tokens = ${refilled} - 1, refilled_at = clock_timestamp()
       WHERE ${refilled} >= 1
       RETURNING tokens`,
      { user: userId, burst: this.burst, rate: this.perSecond },
    );
    if ((taken as { rows: unknown[] }).rows.length === 1) return;
    const state = await this.db.raw(`SELECT ${refilled} AS tokens FROM task_rate_limits WHERE user_id = :user`, {
      user: userId,
      burst: this.burst,
      rate: this.perSecond,
    });
    const tokens = Number((state as { rows: Array<{ tokens: number }> }).rows[0]?.tokens ?? 0);
    throw new RateLimitedError(this.perMinute, Math.max(1, Math.ceil((1 - tokens) / this.perSecond)));
  }
}
