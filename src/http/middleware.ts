import { randomUUID } from 'node:crypto';
import type { RequestHandler } from 'express';
import { TokenError, type Authenticator } from '../auth/tokens';
import type { Logger } from '../log';
import { LineBudget, type LogLimit } from '../realtime';
import { RequestRefused, sendError } from './errors';

const SANE_REQUEST_ID = /^[A-Za-z0-9._:-]{1,128}$/;

/** Access lines one client may cause per outcome: 20 per 10 s, as the realtime layer's lines. */
export const ACCESS_LOG_LIMIT: LogLimit = { lines: 20, intervalMs: 10_000 };

/**
 * Gives each request an id and a logger, and logs its end (path only: a query may hold a token).
 * Access lines are the client's doing, and one client can send thousands of requests a second:
 * each client (its user once authenticated, else its address) gets `limit` lines per status
 * class (2xx, 4xx, …) per window; the rest are counted and the next line written carries
 * `suppressed: n`. A 5xx is the server's doing and is always written (at error level).
 */
export function requestContext(logger: Logger, limit: LogLimit | false = ACCESS_LOG_LIMIT): RequestHandler {
  const budget = limit === false ? null : new LineBudget(limit);
  return (req, res, next) => {
    const given = req.get('x-request-id');
    req.id = given && SANE_REQUEST_ID.test(given) ? given : randomUUID();
    req.log = logger.child({ request_id: req.id });
    res.setHeader('X-Request-Id', req.id);
    const started = process.hrtime.bigint();
    res.on('finish', () => {
      // Below 500 the line is info: nothing to count or format when that level is off.
      if (res.statusCode < 500 && !req.log.isLevelEnabled('info')) return;
      const ms = Number(process.hrtime.bigint() - started) / 1e6;
      // originalUrl: req.path is relative to the router that handled it (/tasks, not /api/tasks).
      const path = req.originalUrl.split('?', 1)[0];
      const line = { method: req.method, path, status: res.statusCode, ms: Math.round(ms * 10) / 10 };
      if (res.statusCode >= 500) {
        req.log.error(line, 'request');
        return;
      }
      const client = req.userId !== undefined ? `user ${req.userId}` : `address ${req.socket.remoteAddress ?? ''}`;
      const suppressed = budget === null ? 0 : budget.take(`${client}\u0000${Math.floor(res.statusCode / 100)}xx`);
      if (suppressed === null) return;
      req.log.info(suppressed > 0 ? { ...line, suppressed } : line, 'request');
    });
    next();
  };
}

/** Requires `Authorization: Bearer <token>` (open mode: everyone is the local user). */
export function requireUser(auth: Authenticator): RequestHandler {
  return async (req, _res, next) => {
    const header = req.get('authorization');
    const m = header ? /^Bearer\s+(\S+)\s*$/i.exec(header) : null;
    // A header that is present but not a bearer token is refused even in open mode.
    if (header && !m) return next(new TokenError('malformed', 'Authorization must be "Bearer <token>"'));
    req.userId = (await auth.identify(m?.[1])).userId;
    next();
  };
}

/** 400 without a body; 415 unless the request says its body is JSON (passed on as RequestRefused). */
export const requireJson: RequestHandler = (req, _res, next) => {
  // Checked first: without a body req.is() is null whatever the Content-Type says, which read as
  // "Content-Type must be application/json (got application/json)".
  const length = req.get('content-length');
  if (req.get('transfer-encoding') === undefined && (length === undefined || Number(length) === 0)) {
    return next(new RequestRefused(400, 'the request body is missing: send a JSON object with "input_data"'));
  }
  if (!req.is('application/json')) {
    return next(
      new RequestRefused(415, `Content-Type must be application/json (got ${req.get('content-type') ?? 'none'})`),
    );
  }
  next();
};

/**
 * For a path that exists but not with this method: 405 naming the allowed ones in `Allow`
 * (a 404 would say the path does not exist). OPTIONS answers the same list.
 */
export function methodNotAllowed(allow: string): RequestHandler {
  return (req, res) => {
    res.setHeader('Allow', allow);
    if (req.method === 'OPTIONS') {
      res.status(204).end();
      return;
    }
    sendError(res, 405, `${req.method} is not allowed on ${req.originalUrl.split('?', 1)[0]} (allowed: ${allow})`);
  };
}
