import type { Db } from './index';

/**
 * A provider's request budget shared by every gateway process on the database: a token bucket
 * per provider and kind (`provider_budgets`), refilled evenly, taken by one atomic statement on
 * the database's clock, so N processes together stay within what the provider allows one account
 * (`PROVIDER_CREATES_PER_MINUTE` is the account's, not each process's). The bucket holds a tenth
 * of the budget as a burst and refills the rest over the window: any rolling window sees at most
 * `perWindow` tokens taken.
 */
export class SharedProviderBudget {
  readonly burst: number;
  private readonly perSecond: number;

  constructor(
    private readonly db: Db,
    readonly provider: string,
    readonly kind: 'create' | 'read',
    readonly perWindow: number,
    /** The window the budget is for: a minute (tests scale it down with the stand-in's clock). */
    readonly windowMs = 60_000,
  ) {
    this.burst = Math.max(1, Math.floor(perWindow / 10));
    this.perSecond = Math.max(perWindow - this.burst, perWindow / 2) / (windowMs / 1000);
  }

  /** Takes a token: 0 when taken, else the milliseconds until the next one is due (take again then). */
  async take(): Promise<number> {
    const refilled = `LEAST(:burst::float8, provider_budgets.tokens
        + EXTRACT(EPOCH FROM (clock_timestamp() - provider_budgets.refilled_at))::float8 * :rate::float8)`;
    const params = { provider: this.provider, kind: this.kind, burst: this.burst, rate: this.perSecond };
    const taken = await this.db.raw(
      `INSERT INTO provider_budgets AS provider_budgets (provider, kind, tokens, refilled_at)
       VALUES (:provider, :kind, :burst::float8 - 1, clock_timestamp())
       ON CONFLICT (provider, kind) DO UPDATE SET tokens = ${refilled} - 1, refilled_at = clock_timestamp()
       WHERE ${refilled} >= 1
       RETURNING tokens`,
      params,
    );
    if ((taken as { rows: unknown[] }).rows.length === 1) return 0;
    const state = await this.db.raw(
      `SELECT ${refilled} AS tokens FROM provider_budgets WHERE provider = :provider AND kind = :kind`,
      params,
    );
    const tokens = Number((state as { rows: Array<{ tokens: number }> }).rows[0]?.tokens ?? 0);
    return Math.max(1, Math.ceil(((1 - tokens) / this.perSecond) * 1000));
  }
}
