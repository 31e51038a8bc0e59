// STORAGE_URL's syntax, apart from the S3 client (config reads it without loading the SDK).

/** STORAGE_URL, parsed: `s3://bucket[/prefix]?endpoint=…&region=…&path_style=…&serve=…`. */
export interface S3Settings {
  bucket: string;
  /** Key prefix, without slashes at either end ('' for none). */
  prefix: string;
  /** An S3-compatible endpoint (MinIO, R2, …); unset means AWS. */
  endpoint: string | undefined;
  region: string;
  /** Path-style addressing (`endpoint/bucket/key`), the default with an endpoint. */
  pathStyle: boolean;
  /** `redirect`: 302 to a presigned URL (the store serves the bytes); `stream`: pyre streams them. */
  serve: 'redirect' | 'stream';
}

const PARAMS = new Set(['endpoint', 'region', 'path_style', 'serve']);

/** Parses STORAGE_URL; throws an Error whose message says what is wrong. */
export function parseStorageUrl(text: string, env: NodeJS.ProcessEnv = {}): S3Settings {
  let u: URL;
  try {
    u = new URL(text);
  } catch {
    throw new Error('must be a URL like s3://bucket/prefix?endpoint=http://minio:9000&region=us-east-1');
  }
  if (u.protocol !== 's3:') throw new Error(`must start with s3:// (got ${u.protocol}//)`);
  if (u.username || u.password)
    throw new Error('must not carry credentials: set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY');
  const bucket = u.hostname;
  if (!/^[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]$/.test(bucket)) throw new Error(`bucket name "${bucket}" is not valid`);
  for (const k of u.searchParams.keys()) if (!PARAMS.has(k)) throw new Error(`unknown parameter "${k}"`);
  const endpoint = u.searchParams.get('endpoint') || undefined;
  if (endpoint !== undefined && !/^https?:\/\/[^\s/]+\/?$/.test(endpoint))
    throw new Error('endpoint must be an http(s) origin, like http://minio:9000');
  const pathStyle = u.searchParams.get('path_style');
  if (pathStyle !== null && pathStyle !== 'true' && pathStyle !== 'false')
    throw new Error('path_style must be true or false');
  const serve = u.searchParams.get('serve') ?? 'redirect';
  if (serve !== 'redirect' && serve !== 'stream') throw new Error('serve must be redirect or stream');
  return {
    bucket,
    prefix: decodeURIComponent(u.pathname).replace(/^\/+|\/+$/g, ''),
    endpoint: endpoint?.replace(/\/+$/, ''),
    region: u.searchParams.get('region') || env.AWS_REGION || env.AWS_DEFAULT_REGION || 'us-east-1',
    pathStyle: pathStyle === null ? endpoint !== undefined : pathStyle === 'true',
    serve,
  };
}
