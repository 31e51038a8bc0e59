// @ts-check
// REST calls to the gateway, with the signed-in token.

import { noteServerDate } from './clock.js';

const TOKEN_KEY = 'pyre.token';

export function savedToken() {
  return localStorage.getItem(TOKEN_KEY) || '';
}

export function saveToken(token) {
  if (token) localStorage.setItem(TOKEN_KEY, token);
  else localStorage.removeItem(TOKEN_KEY);
}

/** What a request that never reached the gateway says (fetch's own "Failed to fetch" means nothing to a user). */
export const UNREACHABLE = 'the gateway is not reachable; retrying';

/** An answer the gateway refused: status, and its Phoenix-style `errors`. Status 0: no answer at all. */
export class ApiError extends Error {
  constructor(status, errors) {
    const detail = errors && typeof errors.detail === 'string' ? errors.detail : `HTTP ${status}`;
    super(detail);
    this.status = status;
    this.errors = errors || {};
  }

  /** The gateway could not be reached (down, or the network is). */
  get unreachable() {
    return this.status === 0;
  }
}

let onUnauthorized = null;

/** Called with the ApiError when a request made with the saved token is answered 401. */
export function setUnauthorizedHandler(fn) {
  onUnauthorized = fn;
}

/**
 * @param {string} path
 * @param {{ method?: string, body?: unknown, token?: string }} [options]
 */
export async function api(path, { method = 'GET', body, token = savedToken() } = {}) {
  const headers = { accept: 'application/json' };
  if (token) headers.authorization = `Bearer ${token}`;
  if (body !== undefined) headers['content-type'] = 'application/json';
  let res;
  const sentAt = Date.now();
  try {
    res = await fetch(path, { method, headers, body: body === undefined ? undefined : JSON.stringify(body) });
  } catch {
    throw new ApiError(0, { detail: UNREACHABLE });
  }
  noteServerDate(res.headers.get('date'), sentAt, Date.now());
  let json = null;
  try {
    json = await res.json();
  } catch {
    /* not JSON */
  }
  if (!res.ok) {
    const err = new ApiError(res.status, json && json.errors);
    // The saved token stopped being accepted (expired, or the secret changed): back to sign-in.
    if (res.status === 401 && token && token === savedToken() && onUnauthorized) onUnauthorized(err);
    throw err;
  }
  return json;
}
