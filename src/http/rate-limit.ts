import type { RequestHandler } from 'express';
import { sendError } from './errors';

/**
 * A token bucket per user: `perMinute` requests a minute, in bursts of up to
 * `burst`. Over it: 429 with Retry-After. In memory, per process.
 */
export function rateLimitPerUser(
  perMinute: number,
  burst = Math.max(10, Math.ceil(perMinute / 6)),
  now = () => Date.now(),
): RequestHandler {
  const buckets = new Map<string, { tokens: number; at: number }>();
  const ratePerMs = perMinute / 60_000;
  return (req, res, next) => {
    if (perMinute <= 0) return next();
    const t = now();
    const key = req.userId;
    const b = buckets.get(key) ?? { tokens: burst, at: t };
    b.tokens = Math.min(burst, b.tokens + (t - b.at) * ratePerMs);
    b.at = t;
    buckets.set(key, b);
    if (buckets.size > 100_000) buckets.delete(buckets.keys().next().value!);
    if (b.tokens >= 1) {
      b.tokens -= 1;
      return next();
    }
    const retryAfter = Math.max(1, Math.ceil((1 - b.tokens) / ratePerMs / 1000));
    sendError(res, 429, `rate limited: at most ${perMinute} task submissions a minute; retry in ${retryAfter} s`, {
      'Retry-After': String(retryAfter),
    });
  };
}
