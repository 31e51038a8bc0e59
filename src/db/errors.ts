/**
 * Whether an error means the database cannot be reached or is going away (a restart, a failover,
 * a killed backend, a network cut, a pool exhausted while it is down), as opposed to a bug or a
 * refused statement. Such a failure is temporary: REST answers 503 with Retry-After, a channel
 * replies with an error the client retries, the runner tries again later.
 */
export function isDatabaseUnavailable(err: unknown): boolean {
  if (!err || typeof err !== 'object') return false;
  const e = err as { code?: unknown; name?: unknown; message?: unknown; errors?: unknown };
  if (e.name === 'KnexTimeoutError') return true; // no pooled connection within the acquire timeout
  if (typeof e.code === 'string') {
    if (NETWORK_CODES.has(e.code)) return true;
    // SQLSTATE class 08 (connection exception), 57P01-57P03 (admin/crash shutdown, cannot connect
    // now), 53300 (too many connections), 57014 (statement timeout, the server is stalled).
    if (/^08...$/.test(e.code) || /^57P0[1-3]$/.test(e.code) || e.code === '53300' || e.code === '57014') return true;
  }
  if (typeof e.message === 'string' && CONNECTION_MESSAGES.some((m) => (e.message as string).includes(m))) return true;
  // A connect to a host with several addresses fails with an AggregateError of network errors.
  if (Array.isArray(e.errors)) return e.errors.length > 0 && e.errors.every(isDatabaseUnavailable);
  return false;
}

const NETWORK_CODES = new Set([
  'ECONNREFUSED',
  'ECONNRESET',
  'ECONNABORTED',
  'ETIMEDOUT',
  'EPIPE',
  'ENOTFOUND',
  'EAI_AGAIN',
  'EHOSTUNREACH',
  'ENETUNREACH',
  'ENETDOWN',
]);

/** What node-postgres says when a connection dies or never comes (it sets no code then). */
const CONNECTION_MESSAGES = [
  'Connection terminated',
  'connection error',
  'timeout exceeded when trying to connect',
  'Query read timeout',
  'Client was closed and is not queryable',
  'Client has encountered a connection error',
];
