import { createHmac, timingSafeEqual } from 'node:crypto';

/**
 * Replicate signs webhooks with the Standard Webhooks (Svix) scheme:
 * `webhook-signature: v1,<base64 HMAC-SHA256(key, "<id>.<timestamp>.<raw body>")>`, key being the
 * base64 after `whsec_`. Verify over the raw bytes received, never a re-serialised body.
 */

export type WebhookHeaders = Record<string, string | string[] | undefined> | { get(name: string): string | null };

export type WebhookFailure =
  'missing_headers' | 'empty_body' | 'bad_timestamp' | 'stale' | 'future' | 'bad_signature' | 'bad_secret' | 'bad_body';

export class WebhookVerificationError extends Error {
  readonly reason: WebhookFailure;
  constructor(reason: WebhookFailure, message: string) {
    super(message);
    this.name = 'WebhookVerificationError';
    this.reason = reason;
  }
}

export interface VerifiedWebhook {
  /** `webhook-id`: the same across retries of one message; the idempotency key. */
  id: string;
  /** `webhook-timestamp` in Unix seconds. */
  timestamp: number;
  /** The body parsed as JSON (the prediction at the time of sending). */
  payload: unknown;
}

export interface VerifyWebhookInput {
  /** `whsec_<base64>` as returned by GET /v1/webhooks/default/secret. */
  secret: string;
  headers: WebhookHeaders;
  rawBody: Buffer | Uint8Array | string;
  /** Current time; defaults to `new Date()`. */
  now?: Date | number;
  /** Allowed skew either way, seconds (default 300). */
  toleranceSec?: number;
}

function header(headers: WebhookHeaders, name: string): string | undefined {
  if (typeof (headers as { get?: unknown }).get === 'function') {
    return (headers as { get(n: string): string | null }).get(name) ?? undefined;
  }
  const rec = headers as Record<string, string | string[] | undefined>;
  let v = rec[name];
  if (v === undefined) {
    const key = Object.keys(rec).find((k) => k.toLowerCase() === name);
    v = key === undefined ? undefined : rec[key];
  }
  return Array.isArray(v) ? v[0] : v;
}

function secretKey(secret: string): Buffer {
  const b64 = secret.startsWith('whsec_') ? secret.slice('whsec_'.length) : secret;
  const key = Buffer.from(b64, 'base64');
  if (key.length === 0) throw new WebhookVerificationError('bad_secret', 'Webhook secret is empty or not base64');
  return key;
}

/** `v1,<base64>` for one message; what the stand-in sends and what `verifyWebhook` expects. */
export function signWebhook(input: {
  secret: string;
  id: string;
  timestamp: number | string;
  body: Buffer | Uint8Array | string;
}): string {
  const mac = createHmac('sha256', secretKey(input.secret));
  mac.update(`${input.id}.${input.timestamp}.`);
  mac.update(typeof input.body === 'string' ? Buffer.from(input.body, 'utf8') : input.body);
  return `v1,${mac.digest('base64')}`;
}

/**
 * Checks a delivery and returns it parsed; throws `WebhookVerificationError` (with a `reason`)
 * when a header is missing, the body is empty, the timestamp is outside the tolerance (past or
 * future), or no `v1` signature in the space-separated list matches (constant-time compare).
 */
export function verifyWebhook(input: VerifyWebhookInput): VerifiedWebhook {
  const id = header(input.headers, 'webhook-id');
  const ts = header(input.headers, 'webhook-timestamp');
  const sigHeader = header(input.headers, 'webhook-signature');
  if (!id || !ts || !sigHeader) {
    throw new WebhookVerificationError(
      'missing_headers',
      'Missing webhook-id, webhook-timestamp or webhook-signature header',
    );
  }
  const body = typeof input.rawBody === 'string' ? Buffer.from(input.rawBody, 'utf8') : Buffer.from(input.rawBody);
  if (body.length === 0) throw new WebhookVerificationError('empty_body', 'Webhook body is empty');
  if (!/^\d{1,12}$/.test(ts.trim()))
    throw new WebhookVerificationError('bad_timestamp', `Invalid webhook-timestamp ${JSON.stringify(ts)}`);
  const timestamp = Number(ts.trim());
  const nowSec = Math.floor(
    (input.now === undefined ? Date.now() : typeof input.now === 'number' ? input.now : input.now.getTime()) / 1000,
  );
  const tolerance = input.toleranceSec ?? 300;
  if (timestamp < nowSec - tolerance)
    throw new WebhookVerificationError('stale', `Webhook timestamp is more than ${tolerance}s old`);
  if (timestamp > nowSec + tolerance)
    throw new WebhookVerificationError('future', `Webhook timestamp is more than ${tolerance}s in the future`);

  const expected = Buffer.from(
    signWebhook({ secret: input.secret, id, timestamp: ts.trim(), body }).slice(3),
    'base64',
  );
  let ok = false;
  for (const entry of sigHeader.split(' ')) {
    const comma = entry.indexOf(',');
    if (comma < 0) continue;
    const version = entry.slice(0, comma);
    if (version !== 'v1') continue;
    const given = Buffer.from(entry.slice(comma + 1), 'base64');
    // Keep looping after a match so the time taken does not depend on which entry matched.
    if (given.length === expected.length && timingSafeEqual(given, expected)) ok = true;
  }
  if (!ok) throw new WebhookVerificationError('bad_signature', 'No webhook signature matched');

  let payload: unknown;
  try {
    payload = JSON.parse(body.toString('utf8'));
  } catch {
    throw new WebhookVerificationError('bad_body', 'Webhook body is not JSON');
  }
  return { id, timestamp, payload };
}
