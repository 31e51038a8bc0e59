import fs from 'node:fs';
import path from 'node:path';

/**
 * The CLI's view of a running gateway: REST with the caller's token, and every way
 * it can go wrong turned into a message and an exit code.
 */

/** Exit codes of the `pyre` command (documented in docs/cli.md). */
export const EXIT = {
  ok: 0,
  /** The task failed or was canceled, or something unexpected went wrong. */
  failure: 1,
  /** Bad usage, an unknown task id, or input the gateway refused (400, 413, 415, 422). */
  usage: 2,
  /** No answer from the gateway (connection refused, DNS, timeout, 503) or the realtime connection was lost. */
  unavailable: 69,
  /** The gateway refused the credentials (401, 403). */
  noperm: 77,
  /** Bad configuration (environment). */
  config: 78,
  /** --timeout passed before the task finished. */
  timeout: 124,
  /** Interrupted (Ctrl-C): the task keeps running. */
  interrupted: 130,
} as const;

/** A failure with the message to print and the exit code to leave with. */
export class CliError extends Error {
  constructor(
    message: string,
    readonly exitCode: number,
  ) {
    super(message);
  }
}

export const DEFAULT_URL = 'http://127.0.0.1:4000';

let commandName: string | undefined;

/**
 * How a user runs this command, for hints: `pyre` when a `pyre` on the PATH is this one (a global
 * install, `npm link`), else `npx pyre` (a checkout; another program named pyre may be on the PATH).
 */
export function pyreCommand(): string {
  if (commandName !== undefined) return commandName;
  commandName = 'npx pyre';
  try {
    const self = fs.realpathSync(process.argv[1] ?? '');
    for (const dir of (process.env.PATH ?? '').split(path.delimiter)) {
      const candidate = path.join(dir || '.', 'pyre');
      if (fs.existsSync(candidate) && fs.realpathSync(candidate) === self) commandName = 'pyre';
    }
  } catch {
    /* no argv[1] to compare with: keep `npx pyre` */
  }
  return commandName;
}

export interface ClientOptions {
  url?: string;
  token?: string;
}

type FieldErrors = Record<string, string[] | string>;

/** "model: is not a known model; prompt: can't be blank" from Phoenix-style errors. */
export function describeErrors(errors: FieldErrors | undefined, status: number): string {
  if (!errors || typeof errors !== 'object') return `HTTP ${status}`;
  if (typeof errors.detail === 'string' && Object.keys(errors).length === 1) return errors.detail;
  return Object.entries(errors)
    .map(([field, msgs]) => `${field}: ${Array.isArray(msgs) ? msgs.join(', ') : String(msgs)}`)
    .join('\n');
}

function networkReason(err: unknown): string {
  const cause = (err as { cause?: { code?: string; message?: string } })?.cause;
  const code = cause?.code ?? (err as { code?: string })?.code;
  switch (code) {
    case 'ECONNREFUSED':
      return 'connection refused';
    case 'ENOTFOUND':
    case 'EAI_AGAIN':
      return 'host not found';
    case 'ETIMEDOUT':
    case 'UND_ERR_CONNECT_TIMEOUT':
      return 'connection timed out';
    case 'ECONNRESET':
      return 'connection reset';
    default:
      return cause?.message ?? (err as Error)?.message ?? String(err);
  }
}

export class GatewayClient {
  readonly url: string;
  readonly token: string | undefined;

  constructor(opts: ClientOptions = {}) {
    const raw = (opts.url ?? process.env.PYRE_URL ?? DEFAULT_URL).trim();
    let u: URL;
    try {
      u = new URL(raw);
    } catch {
      throw new CliError(`--url ${JSON.stringify(raw)} is not a URL (e.g. ${DEFAULT_URL})`, EXIT.usage);
    }
    if (u.protocol !== 'http:' && u.protocol !== 'https:')
      throw new CliError(`--url must be http:// or https:// (got ${u.protocol})`, EXIT.usage);
    this.url = u.toString().replace(/\/+$/, '');
    const token = opts.token ?? process.env.PYRE_TOKEN;
    this.token = token && token.trim() !== '' ? token.trim() : undefined;
  }

  /** The WebSocket endpoint phoenix.js connects to (`/socket`, it adds `/websocket`). */
  socketUrl(): string {
    return `${this.url.replace(/^http/, 'ws')}/socket`;
  }

  /** A JSON call; throws CliError with the gateway's own message on a refusal. */
  async request<T>(method: string, path: string, body?: unknown, timeoutMs = 30_000): Promise<T> {
    const headers: Record<string, string> = { accept: 'application/json' };
    if (this.token) headers.authorization = `Bearer ${this.token}`;
    if (body !== undefined) headers['content-type'] = 'application/json';
    let res: Response;
    try {
      res = await fetch(`${this.url}${path}`, {
        method,
        headers,
        body: body === undefined ? undefined : JSON.stringify(body),
        signal: AbortSignal.timeout(timeoutMs),
      });
    } catch (err) {
      const reason =
        (err as Error)?.name === 'TimeoutError' ? `no answer within ${timeoutMs / 1000} s` : networkReason(err);
      throw new CliError(
        `cannot reach the gateway at ${this.url}: ${reason} (is pyre running? set --url or PYRE_URL)`,
        EXIT.unavailable,
      );
    }
    const text = await res.text();
    let json: unknown = null;
    try {
      json = text ? JSON.parse(text) : null;
    } catch {
      /* not JSON */
    }
    if (res.ok) {
      if (json === null)
        throw new CliError(`${this.url}${path} did not answer JSON: is ${this.url} a pyre gateway?`, EXIT.unavailable);
      return json as T;
    }
    const errors = (json as { errors?: FieldErrors } | null)?.errors;
    const message = describeErrors(errors, res.status);
    switch (res.status) {
      case 401:
      case 403:
        throw new CliError(
          `the gateway refused the credentials: ${message}\n` +
            (!this.token
              ? `set --token or PYRE_TOKEN (mint one with \`${pyreCommand()} token --user NAME\`)`
              : /expired/.test(message)
                ? `the token has expired; mint another with \`${pyreCommand()} token --user NAME\``
                : /signature/.test(message)
                  ? "the token was not signed with this gateway's AUTH_SECRET; mint one where AUTH_SECRET is the gateway's"
                  : `the token is not a pyre token (copy it whole from \`${pyreCommand()} token --user NAME\`)`),
          EXIT.noperm,
        );
      case 400:
      case 413:
      case 415:
      case 422:
        throw new CliError(message, EXIT.usage);
      case 429:
        throw new CliError(
          `rate limited: ${message} (retry after ${res.headers.get('retry-after') ?? 'a while'} s)`,
          EXIT.unavailable,
        );
      case 502:
      case 503:
      case 504:
        throw new CliError(`the gateway is not ready (${res.status}): ${message}`, EXIT.unavailable);
      case 404:
        if (errors) throw new CliError(message === 'Not Found' ? 'not found' : message, EXIT.failure);
        throw new CliError(`${this.url}${path} answered 404: is ${this.url} a pyre gateway?`, EXIT.unavailable);
      default:
        throw new CliError(`the gateway answered ${res.status}: ${message}`, EXIT.failure);
    }
  }
}
