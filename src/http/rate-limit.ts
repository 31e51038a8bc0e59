import type { RequestHandler } from 'express';
import { RateLimitedError, type TaskCreationLimit } from '../db/rate-limit';
import { sendError } from './errors';

/**
 * The per-user task-creation limit on a REST route: over it, 429 with Retry-After. The bucket is
 * the cluster's (see TaskCreationLimit), shared with the channels' `*_generate`.
 */
export function rateLimitPerUser(limit: TaskCreationLimit | undefined): RequestHandler {
  return async (req, res, next) => {
    if (!limit?.enabled) return next();
    try {
      await limit.take(req.userId);
    } catch (err) {
      if (!(err instanceof RateLimitedError)) throw err;
      return sendError(res, 429, err.message, { 'Retry-After': String(err.retryAfterSeconds) });
    }
    next();
  };
}
