import type { Logger } from '../log';

/** SQLSTATE classes of a lost or refused connection: 08 connection exception, 57P operator intervention. */
const UNAVAILABLE_STATE = /^(08|57P)/;
/** Socket errors of a connection to the database that failed or broke. */
const SOCKET_CODES = new Set([
  'ECONNREFUSED',
  'ECONNRESET',
  'EPIPE',
  'ETIMEDOUT',
  'EHOSTUNREACH',
  'ENOTFOUND',
  'EAI_AGAIN',
]);
/** What pg and knex say when a connection ends under a query or none can be had. */
const UNAVAILABLE_MESSAGE =
  /Connection terminated|connection ended|not queryable|terminating connection|Timeout acquiring a connection|the database system is (starting up|shutting down)/i;

/**
 * Whether an error from a database call means the database could not be reached (restart,
 * failover, a connection killed), as opposed to a statement that failed on its own merits.
 * Only meaningful for errors of database calls (a provider's network error is told apart first).
 */
export function isDatabaseUnavailable(err: unknown): boolean {
  if (!err || typeof err !== 'object') return false;
  const e = err as { code?: unknown; name?: unknown; message?: unknown };
  const code = typeof e.code === 'string' ? e.code : '';
  if (UNAVAILABLE_STATE.test(code) || SOCKET_CODES.has(code)) return true;
  if (e.name === 'KnexTimeoutError') return true;
  return typeof e.message === 'string' && UNAVAILABLE_MESSAGE.test(e.message);
}

/**
 * The runner's view of the database: reachable or not, as its last claim or lease renewal found.
 * A change is logged once each way, not at every tick of an outage.
 */
export class DatabaseWatch {
  private down = false;

  constructor(private readonly logger: Logger) {}

  get unreachable(): boolean {
    return this.down;
  }

  /** A database call failed; returns whether it was the database being unreachable. */
  failed(err: unknown, during: string): boolean {
    if (!isDatabaseUnavailable(err)) return false;
    if (!this.down) {
      this.down = true;
      this.logger.warn(
        { err: err instanceof Error ? err.message : String(err), during },
        'database unreachable: claiming paused until it answers (leases of running tasks lapse if it stays away)',
      );
    }
    return true;
  }

  /** A database call succeeded. */
  answered(): void {
    if (!this.down) return;
    this.down = false;
    this.logger.info('database answers again: claiming resumed');
  }
}
