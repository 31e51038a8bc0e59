import type { ErrorRequestHandler, Request, RequestHandler, Response } from 'express';
import { RateLimitedError, type TaskCreationLimit } from '../db/rate-limit';
import { sendError } from './errors';

/** 429 with Retry-After. */
export function sendRateLimited(res: Response, err: RateLimitedError): void {
  sendError(res, 429, err.message, { 'Retry-After': String(err.retryAfterSeconds) });
}

/**
 * The per-user limit of POST /api/tasks, taken late: a create that reaches the task insert takes
 * its token in the insert's own statement (TaskService.create's `limit`), one statement and one
 * commit for both. Every request still spends a token as if it had been taken first, before
 * anything else is looked at: `owe` (first in the route) marks the request as owing one;
 * `settle` (the route's error handler) takes it for a request refused before the insert (bad
 * body, invalid input), and over the limit answers 429 instead of the refusal, as the take
 * made first did. `takeNow` takes it at once (a create with an Idempotency-Key, which is written
 * in its own transaction). The bucket is the cluster's (see TaskCreationLimit), shared with the
 * channels' `*_generate`.
 */
export class LateTake {
  private readonly owing = new WeakSet<Request>();

  constructor(readonly limit: TaskCreationLimit | undefined) {}

  get enabled(): boolean {
    return this.limit?.enabled ?? false;
  }

  readonly owe: RequestHandler = (req, _res, next) => {
    if (this.enabled) this.owing.add(req);
    next();
  };

  /** Take the request's token now (429 as RateLimitedError), unless it is not owed. */
  async takeNow(req: Request): Promise<void> {
    if (!this.owing.delete(req)) return;
    await this.limit!.take(req.userId);
  }

  readonly settle: ErrorRequestHandler = async (err: unknown, req, res, next) => {
    if (err instanceof RateLimitedError) return sendRateLimited(res, err);
    if (!this.owing.delete(req)) return next(err);
    try {
      await this.limit!.take(req.userId);
    } catch (taken) {
      if (taken instanceof RateLimitedError) return sendRateLimited(res, taken);
      return next(taken);
    }
    next(err);
  };
}
