import express, { Router } from 'express';
import type { Logger } from '../log';
import { WebhookRefused, type WebhookVerifier } from '../providers/plugin';
import type { Prediction } from '../providers/types';
import { sendError } from './errors';

/**
 * POST /api/webhooks/:provider?task_id=...: each provider's verifier checks the delivery over
 * the raw body (Replicate: Standard Webhooks signature in constant time, with a timestamp
 * tolerance); `/api/webhooks/replicate` is Replicate's. A delivery changes a task only through
 * the runner, which derives events from state: a duplicate delivery finds nothing new to announce.
 */
export function webhookRouter(deps: {
  /** The verifier of a provider's deliveries; undefined: it sends none (or is not running). */
  verifier: (provider: string) => WebhookVerifier | undefined;
  logger: Logger;
  onPrediction: (taskId: string, prediction: Prediction, provider: string) => Promise<void>;
}): Router {
  const r = Router();
  const seen = new Map<string, number>();
  const handling = new Map<string, Promise<void>>();
  r.post('/webhooks/:provider', express.raw({ type: () => true, limit: '5mb' }), async (req, res) => {
    const provider = String(req.params.provider);
    const verifier = deps.verifier(provider);
    if (!verifier) return sendError(res, 404, `provider ${provider} sends no webhooks here`);
    if (!verifier.enabled()) return sendError(res, 404, 'webhooks are not enabled (set PUBLIC_URL)');
    let verified: { id: string; prediction: Prediction } | undefined;
    let refused: WebhookRefused | undefined;
    try {
      verified = verifier.verify(req.headers, Buffer.isBuffer(req.body) ? req.body : Buffer.alloc(0));
    } catch (err) {
      if (!(err instanceof WebhookRefused)) throw err;
      refused = err;
    }
    if (refused?.status === 401) {
      req.log.warn({ provider, reason: refused.reason }, 'webhook refused');
      return sendError(res, 401, `webhook refused: ${refused.message}`);
    }
    const taskId = typeof req.query.task_id === 'string' ? req.query.task_id : undefined;
    if (!taskId) return sendError(res, 422, 'task_id query parameter is missing');
    if (refused || !verified) return sendError(res, refused?.status ?? 422, refused?.message ?? 'webhook refused');
    const { prediction } = verified;
    const key = `${provider}:${verified.id}`;
    if (seen.has(key)) {
      res.status(200).json({ status: 'duplicate' });
      return;
    }
    // The same delivery again while the first is still being handled (a sender that timed out
    // and retried): answer as the first does instead of handling it twice at once.
    const inFlight = handling.get(key);
    if (inFlight) {
      await inFlight;
      res.status(200).json({ status: 'duplicate' });
      return;
    }
    req.log.info(
      { provider, task_id: taskId, prediction_id: prediction.id, status: prediction.status, webhook_id: verified.id },
      'webhook accepted',
    );
    const handled = deps.onPrediction(taskId, prediction, provider);
    handling.set(key, handled);
    try {
      await handled;
    } finally {
      handling.delete(key);
    }
    // Remembered only once handled: a retry of a delivery we failed on is handled again.
    seen.set(key, Date.now());
    if (seen.size > 10_000) seen.delete(seen.keys().next().value!);
    res.status(200).json({ status: 'ok' });
  });
  return r;
}
