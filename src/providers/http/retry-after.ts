/**
 * How long a 429 asks us to wait: `Retry-After` (seconds or HTTP date) first, then a numeric
 * `retry_after` in the body, then the `~30s` / `in 1 second` in the detail (Replicate's words)
 * or in an OpenAI-style `error.message`. Null if none says.
 */
export function parseRetryAfter(headerValue: string | undefined, body: unknown, now = Date.now()): number | null {
  if (headerValue !== undefined && headerValue.trim() !== '') {
    const v = headerValue.trim();
    if (/^\d+(\.\d+)?$/.test(v)) return Math.round(Number(v) * 1000);
    const at = Date.parse(v);
    if (!Number.isNaN(at)) return Math.max(0, at - now);
  }
  if (body && typeof body === 'object') {
    const b = body as { retry_after?: unknown; detail?: unknown; error?: { message?: unknown } };
    if (typeof b.retry_after === 'number' && Number.isFinite(b.retry_after)) return Math.round(b.retry_after * 1000);
    const said = typeof b.detail === 'string' ? b.detail : b.error?.message;
    if (typeof said === 'string') {
      const m = /~\s*(\d+(?:\.\d+)?)\s*s\b/.exec(said) ?? /in\s+(\d+(?:\.\d+)?)\s*(?:s|seconds?)\b/i.exec(said);
      if (m) return Math.round(Number(m[1]) * 1000);
    }
  }
  return null;
}
