import type { ErrorRequestHandler, RequestHandler, Response } from 'express';
import { TokenError } from '../auth/tokens';
import { ConflictError, NotFoundError, ValidationError } from '../tasks/errors';
import { isDatabaseUnavailable } from '../db/errors';

/** Seconds a client is told to wait (Retry-After) while the database is unreachable. */
export const DATABASE_RETRY_AFTER_S = 5;

/** Phoenix's error JSON: `{"errors": {"detail": "..."}}`. */
export function sendError(res: Response, status: number, detail: string, headers: Record<string, string> = {}): void {
  for (const [k, v] of Object.entries(headers)) res.setHeader(k, v);
  res.status(status).json({ errors: { detail } });
}

/** A request refused with `status` and `detail` (passed to the error handler rather than answered at once). */
export class RequestRefused extends Error {
  constructor(
    readonly status: number,
    detail: string,
  ) {
    super(detail);
    this.name = 'RequestRefused';
  }
}

/** 404 for any /api route that does not exist. */
export const notFoundRoute: RequestHandler = (req, res) => {
  sendError(res, 404, `no route for ${req.method} ${req.originalUrl.split('?', 1)[0]}`); // path: relative to /api
};

interface BodyParserError extends Error {
  type?: string;
  status?: number;
  limit?: number;
}

/** Maps every error to its status and a body that names the problem. */
export const errorHandler: ErrorRequestHandler = (err: unknown, req, res, _next) => {
  if (res.headersSent) return;
  if (err instanceof ValidationError) {
    res.status(422).json({ errors: err.fields });
    return;
  }
  if (err instanceof NotFoundError) return sendError(res, 404, 'Not Found');
  if (err instanceof RequestRefused) return sendError(res, err.status, err.message);
  if (err instanceof ConflictError) return sendError(res, 409, err.message);
  if (err instanceof TokenError) {
    return sendError(res, 401, `unauthorized: ${err.message}`, { 'WWW-Authenticate': 'Bearer' });
  }
  const e = err as BodyParserError;
  switch (e?.type) {
    case 'entity.parse.failed':
      return sendError(res, 400, `malformed JSON in request body: ${e.message}`);
    case 'entity.too.large':
      return sendError(res, 413, `request body is larger than the ${Math.round((e.limit ?? 0) / 1024)} KB limit`);
    case 'encoding.unsupported':
    case 'charset.unsupported':
      return sendError(res, 415, e.message);
  }
  if (isDatabaseUnavailable(err)) {
    // Not a bug: the database is restarting or out of reach. Clients retry; no stack in the log.
    req.log?.warn({ err: (err as Error).message }, 'request failed: database unavailable');
    return sendError(res, 503, 'service unavailable: the database cannot be reached; retry later', {
      'Retry-After': String(DATABASE_RETRY_AFTER_S),
    });
  }
  req.log?.error({ err }, 'request failed');
  sendError(res, 500, 'Internal Server Error');
};
