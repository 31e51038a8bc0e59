export {
  ReplicateClient,
  createReplicateClient,
  parseRetryAfter,
  toPrediction,
  DEFAULT_BASE_URL,
  type ReplicateClientOptions,
  type RetryPolicy,
  type RateLimitPolicy,
} from './client';
export {
  verifyWebhook,
  signWebhook,
  WebhookVerificationError,
  type VerifiedWebhook,
  type VerifyWebhookInput,
  type WebhookFailure,
  type WebhookHeaders,
} from './webhooks';
export { SseParser, formatSseEvent } from './sse';
