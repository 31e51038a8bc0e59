/** The HTTP side of long-poll: JSON answers, the CORS preflight, the session token of a request, POST bodies. */
import type { IncomingMessage, ServerResponse } from 'node:http';
import { requestTarget } from '../params';
import type { LpBody } from './messages';

const JSON_HEADERS = {
  'content-type': 'application/json; charset=utf-8',
  'cache-control': 'no-store',
  'access-control-allow-origin': '*',
};

/** `closeConnection`: this node stops; the client's (or balancer's) next request goes on a new connection, to another node. */
export function sendJson(res: ServerResponse, body: LpBody, httpStatus = 200, closeConnection = false): void {
  if (res.writableEnded || res.destroyed) return;
  const text = JSON.stringify(body);
  res.writeHead(httpStatus, {
    ...JSON_HEADERS,
    'content-length': Buffer.byteLength(text),
    ...(closeConnection ? { connection: 'close' } : {}),
  });
  res.end(text);
}

/** Answers an OPTIONS request (phoenix.js sends custom headers, so browsers ask first). */
export function preflight(req: IncomingMessage, res: ServerResponse): void {
  const reqHeaders = req.headers['access-control-request-headers'];
  res.writeHead(200, {
    ...JSON_HEADERS,
    'access-control-allow-headers': typeof reqHeaders === 'string' ? reqHeaders : '',
    'access-control-allow-methods': 'get, post, options',
    'access-control-max-age': '3600',
    'content-length': '0',
  });
  res.end();
}

/** The session token of a request: the `X-Phoenix-Longpoll-Token` header, or else the last `token` query value. */
export function tokenOf(req: IncomingMessage): string | null {
  const h = req.headers['x-phoenix-longpoll-token'];
  if (typeof h === 'string' && h) return h;
  const q = requestTarget(req).split('?')[1];
  if (!q) return null;
  let token: string | null = null;
  for (const seg of q.split('&')) {
    if (seg.startsWith('token=')) {
      try {
        token = decodeURIComponent(seg.slice(6).replace(/\+/g, ' '));
      } catch {
        token = null;
      }
    }
  }
  return token;
}

/**
 * Reads a POST body up to `maxBytes`, then calls `onBody`. A bigger one gets `onTooBig(size)`
 * once (the caller answers 413) and no `onBody`.
 */
export function readBody(
  req: IncomingMessage,
  res: ServerResponse,
  maxBytes: number,
  onBody: (body: Buffer) => void,
  onTooBig: (size: number) => void,
): void {
  const preRead = (req as { body?: unknown }).body;
  if (Buffer.isBuffer(preRead) || typeof preRead === 'string') {
    onBody(Buffer.from(preRead));
    return;
  }
  const chunks: Buffer[] = [];
  let size = 0;
  let tooBig = false;
  req.on('data', (c: Buffer) => {
    if (tooBig) return;
    size += c.length;
    if (size > maxBytes) {
      tooBig = true;
      chunks.length = 0;
      onTooBig(size);
      return;
    }
    chunks.push(c);
  });
  req.on('end', () => {
    if (!tooBig) onBody(Buffer.concat(chunks));
  });
  req.on('error', () => res.destroy());
}
