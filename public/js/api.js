// REST calls to the gateway, with the signed-in token.

const TOKEN_KEY = 'pyre.token';

export function savedToken() {
  return localStorage.getItem(TOKEN_KEY) || '';
}

export function saveToken(token) {
  if (token) localStorage.setItem(TOKEN_KEY, token);
  else localStorage.removeItem(TOKEN_KEY);
}

/** An answer the gateway refused: status, and its Phoenix-style `errors`. */
export class ApiError extends Error {
  constructor(status, errors) {
    const detail = errors && typeof errors.detail === 'string' ? errors.detail : `HTTP ${status}`;
    super(detail);
    this.status = status;
    this.errors = errors || {};
  }
}

export async function api(path, { method = 'GET', body, token = savedToken() } = {}) {
  const headers = { accept: 'application/json' };
  if (token) headers.authorization = `Bearer ${token}`;
  if (body !== undefined) headers['content-type'] = 'application/json';
  const res = await fetch(path, { method, headers, body: body === undefined ? undefined : JSON.stringify(body) });
  let json = null;
  try {
    json = await res.json();
  } catch {
    /* not JSON */
  }
  if (!res.ok) throw new ApiError(res.status, json && json.errors);
  return json;
}
