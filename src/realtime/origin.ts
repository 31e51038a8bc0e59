/**
 * Origin checking with Phoenix's rules (Phoenix.Socket.Transport.check_origin):
 * no Origin header ⇒ allowed (native apps send none); `false` ⇒ allowed; `true` ⇒ the Origin's
 * host must equal the request's Host; a list of `"https://a.com"`, `"//b.com:888"`, `"//*.c.com"`
 * entries (scheme and port compared only when given; `*.` matches the bare host and subdomains);
 * `'conn'` ⇒ scheme, host and port must equal the request's. An Origin without a host is refused.
 */

export type CheckOrigin = boolean | 'conn' | string[] | ((origin: string) => boolean);

interface AllowedOrigin {
  scheme: string | null;
  host: string;
  wildcard: boolean;
  port: string | null;
}

function parseAllowed(entry: string): AllowedOrigin {
  const m = /^(?:([a-z][a-z0-9+.-]*):)?\/\/([^/:]+)(?::(\d+))?\/?$/i.exec(entry.trim());
  if (!m)
    throw new Error(`invalid checkOrigin entry ${JSON.stringify(entry)}: expected "scheme://host[:port]" or "//host"`);
  let host = m[2]!.toLowerCase();
  const wildcard = host.startsWith('*.');
  if (wildcard) host = host.slice(2);
  return { scheme: m[1]?.toLowerCase() ?? null, host, wildcard, port: m[3] ?? null };
}

function defaultPort(scheme: string): string {
  return scheme === 'https' || scheme === 'wss' ? '443' : '80';
}

interface ParsedOrigin {
  scheme: string;
  host: string;
  port: string;
}

function parseOrigin(origin: string): ParsedOrigin | null {
  try {
    const u = new URL(origin);
    if (!u.hostname) return null;
    const scheme = u.protocol.replace(/:$/, '').toLowerCase();
    return { scheme, host: u.hostname.toLowerCase(), port: u.port || defaultPort(scheme) };
  } catch {
    return null;
  }
}

/** Compiles a checkOrigin option into a predicate over (Origin header, request Host header, request is TLS). */
export function compileOriginCheck(
  opt: CheckOrigin,
): (origin: string | undefined, host: string | undefined, secure: boolean) => boolean {
  if (opt === false) return () => true;
  if (typeof opt === 'function') return (origin) => origin === undefined || opt(origin);
  if (opt === true || opt === 'conn') {
    const strict = opt === 'conn';
    return (origin, hostHeader, secure) => {
      if (origin === undefined) return true;
      const o = parseOrigin(origin);
      if (!o || !hostHeader) return false;
      const h = parseOrigin(`${secure ? 'https' : 'http'}://${hostHeader}`);
      if (!h) return false;
      if (o.host !== h.host) return false;
      return !strict || (o.scheme.replace(/^ws/, 'http') === h.scheme && o.port === h.port);
    };
  }
  const allowed = opt.map(parseAllowed);
  return (origin) => {
    if (origin === undefined) return true;
    const o = parseOrigin(origin);
    if (!o) return false;
    return allowed.some((a) => {
      if (a.scheme && a.scheme !== o.scheme) return false;
      if (a.port && a.port !== o.port) return false;
      return a.wildcard ? o.host === a.host || o.host.endsWith(`.${a.host}`) : o.host === a.host;
    });
  };
}
