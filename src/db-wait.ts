import pg from 'pg';
import type { Logger } from './log';

/** Why the database could not be used, in one line, and whether waiting may help. */
export interface DatabaseProblem {
  message: string;
  /** The server may be coming up (refused, not resolvable yet, starting up): worth retrying. */
  transient: boolean;
}

/** Where DATABASE_URL points, without the password (for messages). */
export function describeTarget(databaseUrl: string): string {
  try {
    const u = new URL(databaseUrl);
    return `${u.username ? `${decodeURIComponent(u.username)}@` : ''}${u.hostname}:${u.port || 5432}${u.pathname}`;
  } catch {
    return 'DATABASE_URL';
  }
}

/** Names what a pg connection error means. */
export function classify(err: unknown, databaseUrl: string): DatabaseProblem {
  const e = err as { code?: string; message?: string };
  const target = describeTarget(databaseUrl);
  const db = (() => {
    try {
      return decodeURIComponent(new URL(databaseUrl).pathname.slice(1)) || '(default)';
    } catch {
      return '?';
    }
  })();
  switch (e.code) {
    case 'ECONNREFUSED':
      return { message: `the database server at ${target} refused the connection (not running yet?)`, transient: true };
    case 'ENOTFOUND':
    case 'EAI_AGAIN':
      return { message: `the database host in ${target} cannot be resolved`, transient: true };
    case 'ETIMEDOUT':
    case 'EHOSTUNREACH':
    case 'ENETUNREACH':
      return { message: `the database host in ${target} is unreachable (${e.code})`, transient: true };
    case '57P03': // cannot_connect_now: the server is starting up
      return { message: `the database server at ${target} is starting up`, transient: true };
    case '3D000':
      return {
        message: `the database "${db}" does not exist on ${target} (create it, or fix DATABASE_URL)`,
        transient: false,
      };
    case '28P01':
    case '28000':
      return {
        message: `the database server at ${target} refused the credentials (${e.message ?? 'authentication failed'})`,
        transient: false,
      };
    default:
      return { message: `cannot use the database at ${target}: ${e.message ?? String(err)}`, transient: false };
  }
}

/**
 * Waits for DATABASE_URL to accept a connection, as a server in Docker Compose starts before its
 * database: transient problems are retried (logged once a few seconds) for up to waitSeconds;
 * resolves to null when the database answers, or to the problem that stopped the wait.
 */
export async function waitForDatabase(
  databaseUrl: string,
  logger: Logger,
  waitSeconds: number,
): Promise<DatabaseProblem | null> {
  const deadline = Date.now() + waitSeconds * 1000;
  let delay = 250;
  let lastLogged = 0;
  for (;;) {
    const client = new pg.Client({ connectionString: databaseUrl, connectionTimeoutMillis: 5000 });
    client.on('error', () => {}); // a dropped connection during the check is reported by connect/query
    try {
      await client.connect();
      await client.query('select 1');
      return null;
    } catch (err) {
      const problem = classify(err, databaseUrl);
      if (!problem.transient || Date.now() + delay > deadline) return problem;
      if (Date.now() - lastLogged > 5000) {
        lastLogged = Date.now();
        logger.warn(`waiting for the database: ${problem.message}; retrying for up to ${waitSeconds} s`);
      }
    } finally {
      await client.end().catch(() => {});
    }
    await new Promise((r) => setTimeout(r, delay));
    delay = Math.min(delay * 2, 2000);
  }
}
