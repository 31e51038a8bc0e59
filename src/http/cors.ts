import type { RequestHandler } from 'express';
import { compileOriginCheck } from '../realtime/origin';
import { sendError } from './errors';

const ALLOW_METHODS = 'GET, HEAD, POST, OPTIONS';
const ALLOW_HEADERS = 'Authorization, Content-Type, Idempotency-Key, X-Request-Id';
// Response headers a page's script may read besides the CORS-safelisted ones.
const EXPOSE_HEADERS = 'Location, X-Request-Id, Idempotent-Replayed, Retry-After, WWW-Authenticate';

/**
 * CORS for the REST API: CORS_ORIGINS lists the browser origins allowed to call it, with
 * CHECK_ORIGIN's syntax (`https://a.com`, `//*.b.com`). Unset: no CORS headers (same-origin only).
 * Credentials are bearer tokens, not cookies, so `Access-Control-Allow-Credentials` is not sent.
 */
export function cors(origins: string[] | undefined): RequestHandler {
  if (!origins || origins.length === 0) return (_req, _res, next) => next();
  const allowed = compileOriginCheck(origins);
  return (req, res, next) => {
    const origin = req.get('origin');
    if (origin === undefined) return next();
    res.vary('Origin');
    const preflight = req.method === 'OPTIONS' && req.get('access-control-request-method') !== undefined;
    if (!allowed(origin, undefined, false)) {
      if (preflight) return sendError(res, 403, `origin ${origin} is not allowed (CORS_ORIGINS)`);
      return next(); // no CORS headers: the browser keeps the answer from the page
    }
    res.setHeader('Access-Control-Allow-Origin', origin);
    if (preflight) {
      res.setHeader('Access-Control-Allow-Methods', ALLOW_METHODS);
      res.setHeader('Access-Control-Allow-Headers', ALLOW_HEADERS);
      res.setHeader('Access-Control-Max-Age', '600');
      res.status(204).end();
      return;
    }
    res.setHeader('Access-Control-Expose-Headers', EXPOSE_HEADERS);
    next();
  };
}
