import type { ProviderError } from '../providers/types';
import { taskError, type TaskError } from '../tasks/events';

/**
 * A failure as the end user sees it (a stable code, our message) and as the operator sees it (the
 * provider's own words). Replicate's texts are in docs/replicate.md: a failed prediction's `error`
 * string, or an API answer's problem `title`/`detail`.
 */
export interface Failure {
  error: TaskError;
  /** The provider's own words, for the logs and the task's `provider_error`; never shown to the end user. */
  providerError: string | null;
}

/** Imagen's "flagged as sensitive ... (E005)", and the NSFW / safety checker texts other models use. */
const CONTENT_REFUSED =
  /\(E005\)|flagged as sensitive|\bnsfw\b|safety (filter|checker|system)|content (policy|moderation)|prohibited content/i;
/** A model's own input validation, reported as a failed prediction after a 201. */
const INVALID_INPUT = /^Prediction input failed validation|\binput validation failed\b/i;
/** The account, not the task: credit, billing, spend limits, capacity. */
const PROVIDER_UNAVAILABLE =
  /insufficient credit|\/account\/billing|payment required|spend(ing)? limit|out of capacity|no capacity|at capacity/i;

/** A streamed completion cut off mid-way (the OpenAI-compatible client's words): never resumed, never repeated. */
const INTERRUPTED = /^completion interrupted\b/i;

function byText(text: string): TaskError | null {
  if (INTERRUPTED.test(text)) return taskError('completion_interrupted');
  if (CONTENT_REFUSED.test(text)) return taskError('content_refused');
  if (PROVIDER_UNAVAILABLE.test(text)) return taskError('provider_unavailable');
  if (INVALID_INPUT.test(text)) return taskError('invalid_input');
  return null;
}

/** A prediction that ended `failed`, with Replicate's `error` string. */
export function failedPrediction(providerText: string | null): Failure {
  const text = providerText ?? '';
  return { error: byText(text) ?? taskError('provider_failed'), providerError: providerText };
}

/**
 * An API answer no retry can fix (a 4xx other than 429). 401/402/403/404 are about the gateway's
 * account, token or model list (the operator's to fix); 400/413/422 about the input.
 */
export function refusedRequest(err: ProviderError): Failure {
  const words = [err.title, err.detail].filter(Boolean).join(': ') || err.message;
  const status = err.status;
  const fromText = byText(words);
  let error: TaskError;
  if (fromText?.code === 'content_refused') error = fromText;
  else if (status === 401 || status === 402 || status === 403 || status === 404 || status === null)
    error = taskError('provider_unavailable');
  else if (status === 400 || status === 413 || status === 422) error = fromText ?? taskError('invalid_input');
  else error = fromText ?? taskError('provider_failed');
  return { error, providerError: `HTTP ${status ?? '-'} ${words}` };
}
