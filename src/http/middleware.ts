import { randomUUID } from 'node:crypto';
import type { RequestHandler } from 'express';
import { TokenError, type Authenticator } from '../auth/tokens';
import type { Logger } from '../log';
import { sendError } from './errors';

const SANE_REQUEST_ID = /^[A-Za-z0-9._:-]{1,128}$/;

/** Gives each request an id and a logger, and logs its end (path only: a query may hold a token). */
export function requestContext(logger: Logger): RequestHandler {
  return (req, res, next) => {
    const given = req.get('x-request-id');
    req.id = given && SANE_REQUEST_ID.test(given) ? given : randomUUID();
    req.log = logger.child({ request_id: req.id });
    res.setHeader('X-Request-Id', req.id);
    const started = process.hrtime.bigint();
    res.on('finish', () => {
      const ms = Number(process.hrtime.bigint() - started) / 1e6;
      const level = res.statusCode >= 500 ? 'error' : 'info';
      // originalUrl: req.path is relative to the router that handled it (/tasks, not /api/tasks).
      const path = req.originalUrl.split('?', 1)[0];
      req.log[level]({ method: req.method, path, status: res.statusCode, ms: Math.round(ms * 10) / 10 }, 'request');
    });
    next();
  };
}

/** Requires `Authorization: Bearer <token>` (open mode: everyone is the local user). */
export function requireUser(auth: Authenticator): RequestHandler {
  return (req, _res, next) => {
    const header = req.get('authorization');
    const m = header ? /^Bearer\s+(\S+)\s*$/i.exec(header) : null;
    // A header that is present but not a bearer token is refused even in open mode.
    if (header && !m) return next(new TokenError('malformed'));
    req.userId = auth.userFor(m?.[1]);
    next();
  };
}

/** 415 unless the request says its body is JSON. */
export const requireJson: RequestHandler = (req, res, next) => {
  if (!req.is('application/json')) {
    return sendError(res, 415, `Content-Type must be application/json (got ${req.get('content-type') ?? 'none'})`);
  }
  next();
};
