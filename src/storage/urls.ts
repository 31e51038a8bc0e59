import type { IncomingHttpHeaders } from 'node:http';

/**
 * Output file URLs are stored relative to the gateway (`/files/<task_id>/<name>`), so that any
 * process, on any machine, behind any name, can hand them out. They are made absolute when they
 * leave pyre (REST answers, channel pushes, the user feed), from PUBLIC_URL when it is set, or
 * else from the Host the client used for that request or socket. Changing PUBLIC_URL therefore
 * changes the URLs of tasks stored before.
 */

/** The path stored for an output file. */
export function outputPath(taskId: string, name: string): string {
  return `/files/${taskId}/${name}`;
}

/**
 * The base URL a client reached pyre at: PUBLIC_URL, or the request's Host (with the scheme a
 * proxy names in X-Forwarded-Proto, else the connection's). `fallback` serves requests without a
 * Host header (HTTP/1.0).
 */
export function requestBase(
  publicUrl: string | undefined,
  headers: IncomingHttpHeaders,
  encrypted: boolean,
  fallback: () => string,
): string {
  if (publicUrl) return publicUrl;
  const host = headers.host;
  if (!host || !/^[A-Za-z0-9.\-[\]:]+$/.test(host)) return fallback();
  const forwarded = String(headers['x-forwarded-proto'] ?? '')
    .split(',')[0]!
    .trim()
    .toLowerCase();
  const scheme = forwarded === 'https' || forwarded === 'http' ? forwarded : encrypted ? 'https' : 'http';
  return `${scheme}://${host}`;
}

/**
 * A task (or an event payload) with its `output.urls` made absolute against `base`. Values
 * without relative URLs are returned as they are (no copy), so the common event costs nothing.
 */
export function withAbsoluteUrls<T>(value: T, base: string): T {
  const output = (value as { output?: { urls?: unknown } } | null | undefined)?.output;
  const urls = output?.urls;
  if (!Array.isArray(urls) || !urls.some((u) => typeof u === 'string' && u.startsWith('/'))) return value;
  return {
    ...value,
    output: { ...output, urls: urls.map((u) => (typeof u === 'string' && u.startsWith('/') ? base + u : u)) },
  };
}
