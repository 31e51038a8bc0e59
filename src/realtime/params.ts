/**
 * Request targets as Phoenix reads them: the query string decoded as Plug does it
 * (Plug.Conn.Query.decode: `+` is a space, `a[b]=1` nests, `a[]=1` builds a list, a repeated key
 * keeps the last value, empty segments are skipped), and the path as its router matches it.
 */

import type { IncomingMessage } from 'node:http';

/** The full request target; Express rewrites `req.url` under a mount path but keeps `originalUrl`. */
export function requestTarget(req: IncomingMessage): string {
  const original = (req as { originalUrl?: unknown }).originalUrl;
  return typeof original === 'string' ? original : (req.url ?? '/');
}

export type Params = { [key: string]: ParamValue };
export type ParamValue = string | ParamValue[] | Params;

function decodeComponent(s: string): string {
  const plus = s.replace(/\+/g, ' ');
  try {
    return decodeURIComponent(plus);
  } catch {
    // Plug rejects bad escapes; keeping the raw text is safer than refusing a connection.
    return plus;
  }
}

const FORBIDDEN = new Set(['__proto__', 'constructor', 'prototype']);

/** Decodes `search` (with or without the leading `?`) into Phoenix's params map. */
export function decodeQuery(search: string): Params {
  const out: Params = {};
  if (search.startsWith('?')) search = search.slice(1);
  if (!search) return out;
  for (const seg of search.split('&')) {
    if (!seg) continue;
    const eq = seg.indexOf('=');
    const rawKey = eq === -1 ? seg : seg.slice(0, eq);
    const value = eq === -1 ? '' : decodeComponent(seg.slice(eq + 1));
    const key = decodeComponent(rawKey);
    if (!key) continue;
    assign(out, splitKey(key), value);
  }
  return out;
}

/** `user[id][x]` → ['user', 'id', 'x']; `list[]` → ['list', '']. Malformed brackets keep the key literal. */
function splitKey(key: string): string[] {
  const open = key.indexOf('[');
  if (open <= 0) return [key];
  const parts = [key.slice(0, open)];
  let rest = key.slice(open);
  while (rest.startsWith('[')) {
    const close = rest.indexOf(']');
    if (close === -1) return [key];
    parts.push(rest.slice(1, close));
    rest = rest.slice(close + 1);
  }
  return rest ? [key] : parts;
}

/** `node[k]` if node has it as its own key (`toString` is not a param because Object.prototype has it). */
function own(node: Params, k: string): ParamValue | undefined {
  return Object.hasOwn(node, k) ? node[k] : undefined;
}

function assign(target: Params, path: string[], value: string): void {
  if (path.some((p) => FORBIDDEN.has(p))) return;
  let node: Params = target;
  for (let i = 0; i < path.length; i++) {
    const k = path[i]!;
    const last = i === path.length - 1;
    const next = path[i + 1];
    if (last) {
      node[k] = value;
      return;
    }
    if (next === '') {
      // `k[]=v` appends to a list (only as the final segment, like Plug).
      const cur = own(node, k);
      if (i + 1 === path.length - 1) {
        node[k] = Array.isArray(cur) ? [...cur, value] : [value];
        return;
      }
      return;
    }
    let child = own(node, k);
    if (child === undefined || typeof child === 'string' || Array.isArray(child)) {
      child = {};
      node[k] = child;
    }
    node = child;
  }
}

/**
 * The path of a request target as Phoenix routes it: empty segments do not count (Plug's
 * `path_info`), so `/socket//websocket` and `/socket/websocket/` are `/socket/websocket`
 * (phoenix.js makes the first from `new Socket("/socket/")`).
 */
export function routePath(target: string): string {
  const path = target.split('?', 1)[0]!;
  return `/${path
    .split('/')
    .filter((seg) => seg !== '')
    .join('/')}`;
}

/** The query string without its `token=<sessionToken>` segments (other `token` values stay). */
export function withoutToken(search: string, sessionToken: string): string {
  const segs = search.replace(/^\?/, '').split('&');
  return segs
    .filter((seg) => {
      if (!seg.startsWith('token=')) return true;
      try {
        return decodeURIComponent(seg.slice(6).replace(/\+/g, ' ')) !== sessionToken;
      } catch {
        return true;
      }
    })
    .join('&');
}
