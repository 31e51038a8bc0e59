import type { IncomingMessage } from 'node:http';
import type { FaultOp } from './faults';
import type { InvalidField } from './models';

/** An HTTP answer of the stand-in, before it is written. `problem`: sent as application/problem+json. */
export interface Answer {
  status: number;
  body: unknown;
  headers?: Record<string, string>;
  problem?: boolean;
}

export function problem(status: number, detail: string, title?: string, extra: Record<string, unknown> = {}): Answer {
  const body: Record<string, unknown> = {};
  if (title !== undefined) body.title = title;
  body.detail = detail;
  body.status = status;
  Object.assign(body, extra);
  return { status, body, problem: true };
}

export const NOT_FOUND = (): Answer => problem(404, 'The requested resource could not be found.');

export function validationFailed(fields: InvalidField[]): Answer {
  return problem(422, fields.map((f) => `- ${f.field}: ${f.description}\n`).join(''), 'Input validation failed', {
    invalid_fields: fields,
  });
}

/** 429 as Replicate sends it; `retryAfter` chooses the Retry-After header (seconds, an HTTP date, none). */
export function throttled(retryAfter: number | 'date' | 'omit' | undefined, detail?: string): Answer {
  const secs = typeof retryAfter === 'number' ? retryAfter : 1;
  const headers: Record<string, string> = {};
  if (retryAfter === 'date') headers['retry-after'] = new Date(Date.now() + 2000).toUTCString();
  else if (retryAfter !== 'omit') headers['retry-after'] = String(secs);
  return {
    status: 429,
    headers,
    body: { detail: detail ?? `Request was throttled. Your rate limit resets in ~${secs}s.`, status: 429 },
    problem: true,
  };
}

/** Go-style duration (`90s`, `5m`, `1h30m45s`, `500ms`) in milliseconds, or null. */
export function parseGoDuration(s: string): number | null {
  const re = /(\d+(?:\.\d+)?)(ms|h|m|s)/gy;
  let total = 0;
  let m: RegExpExecArray | null;
  let pos = 0;
  const str = s.trim();
  if (str === '') return null;
  while ((m = re.exec(str))) {
    const n = Number(m[1]);
    total += m[2] === 'h' ? n * 3_600_000 : m[2] === 'm' ? n * 60_000 : m[2] === 's' ? n * 1000 : n;
    pos = re.lastIndex;
  }
  return pos === str.length ? total : null;
}

export async function readBody(req: IncomingMessage): Promise<Buffer> {
  const chunks: Buffer[] = [];
  for await (const c of req) chunks.push(c as Buffer);
  return Buffer.concat(chunks);
}

/** A request body as JSON if it parses, else its text, else (empty) null. */
export function parseBody(raw: Buffer): unknown {
  if (!raw.length) return null;
  const text = raw.toString('utf8');
  try {
    return JSON.parse(text);
  } catch {
    return text;
  }
}

export type RouteOp = FaultOp | 'admin' | 'unknown';

/** Which operation of the prediction API a request is, with its path parameters (decoded where names). */
export function route(method: string, path: string): { op: RouteOp; params: string[] } {
  let m: RegExpExecArray | null;
  if (path.startsWith('/__admin')) return { op: 'admin', params: [] };
  if (method === 'POST' && (m = /^\/v1\/models\/([^/]+)\/([^/]+)\/predictions$/.exec(path)))
    return { op: 'create', params: [decodeURIComponent(m[1]!), decodeURIComponent(m[2]!)] };
  if (method === 'POST' && path === '/v1/predictions') return { op: 'create', params: [] };
  if (method === 'GET' && path === '/v1/predictions') return { op: 'list', params: [] };
  if (method === 'GET' && (m = /^\/v1\/predictions\/([^/]+)$/.exec(path))) return { op: 'get', params: [m[1]!] };
  if (method === 'POST' && (m = /^\/v1\/predictions\/([^/]+)\/cancel$/.exec(path)))
    return { op: 'cancel', params: [m[1]!] };
  if (method === 'GET' && path === '/v1/webhooks/default/secret') return { op: 'secret', params: [] };
  if (method === 'GET' && path === '/v1/account') return { op: 'account', params: [] };
  if (method === 'GET' && (m = /^\/v1\/models\/([^/]+)\/([^/]+)$/.exec(path)))
    return { op: 'model', params: [decodeURIComponent(m[1]!), decodeURIComponent(m[2]!)] };
  if (method === 'GET' && (m = /^\/v1\/streams\/([^/]+)$/.exec(path))) return { op: 'stream', params: [m[1]!] };
  if ((method === 'GET' || method === 'HEAD') && (m = /^\/delivery\/([^/]+)\/([^/]+)$/.exec(path)))
    return { op: 'file', params: [m[1]!, m[2]!] };
  return { op: 'unknown', params: [] };
}
