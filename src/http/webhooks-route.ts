import express, { Router } from 'express';
import type { Logger } from '../log';
import { toPrediction } from '../providers/replicate/client';
import { verifyWebhook, WebhookVerificationError } from '../providers/replicate/webhooks';
import type { Prediction } from '../providers/types';
import { sendError } from './errors';

/**
 * POST /api/webhooks/replicate?task_id=...: Standard Webhooks signature over the
 * raw body, checked in constant time with a timestamp tolerance. A delivery
 * changes a task only through the runner, which derives events from state: a
 * duplicate delivery finds nothing new to announce.
 */
export function replicateWebhookRouter(deps: {
  secret: () => string | undefined;
  logger: Logger;
  onPrediction: (taskId: string, prediction: Prediction) => Promise<void>;
}): Router {
  const r = Router();
  const seen = new Map<string, number>();
  const handling = new Map<string, Promise<void>>();
  r.post('/webhooks/replicate', express.raw({ type: () => true, limit: '5mb' }), async (req, res) => {
    const secret = deps.secret();
    if (!secret) return sendError(res, 404, 'webhooks are not enabled (set PUBLIC_URL)');
    let verified;
    try {
      verified = verifyWebhook({
        secret,
        headers: req.headers,
        rawBody: Buffer.isBuffer(req.body) ? req.body : Buffer.alloc(0),
      });
    } catch (err) {
      if (err instanceof WebhookVerificationError) {
        req.log.warn({ reason: err.reason }, 'webhook refused');
        return sendError(res, 401, `webhook refused: ${err.message}`);
      }
      throw err;
    }
    const taskId = typeof req.query.task_id === 'string' ? req.query.task_id : undefined;
    if (!taskId) return sendError(res, 422, 'task_id query parameter is missing');
    let prediction: Prediction;
    try {
      prediction = toPrediction(verified.payload);
    } catch {
      return sendError(res, 422, 'webhook body is not a prediction');
    }
    if (seen.has(verified.id)) {
      res.status(200).json({ status: 'duplicate' });
      return;
    }
    // The same delivery again while the first is still being handled (a sender that timed out
    // and retried): answer as the first does instead of handling it twice at once.
    const inFlight = handling.get(verified.id);
    if (inFlight) {
      await inFlight;
      res.status(200).json({ status: 'duplicate' });
      return;
    }
    req.log.info(
      { task_id: taskId, prediction_id: prediction.id, status: prediction.status, webhook_id: verified.id },
      'webhook accepted',
    );
    const handled = deps.onPrediction(taskId, prediction);
    handling.set(verified.id, handled);
    try {
      await handled;
    } finally {
      handling.delete(verified.id);
    }
    // Remembered only once handled: a retry of a delivery we failed on is handled again.
    seen.set(verified.id, Date.now());
    if (seen.size > 10_000) seen.delete(seen.keys().next().value!);
    res.status(200).json({ status: 'ok' });
  });
  return r;
}
