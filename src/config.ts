import path from 'node:path';
import { z } from 'zod';
import { compileOriginCheck } from './realtime/origin';
import { parseStorageUrl, type S3Settings } from './storage/s3-settings';

const LOOPBACK = new Set(['127.0.0.1', '::1', 'localhost']);

const optionalString = z
  .string()
  .transform((s) => s.trim())
  .pipe(z.string())
  .optional()
  .transform((s) => (s === '' ? undefined : s));

const intFromEnv = (min: number, max: number) =>
  z.coerce
    .number({ error: 'must be an integer' })
    .int('must be an integer')
    .min(min, `must be at least ${min}`)
    .max(max, `must be at most ${max}`);

/** A comma-separated origin list, or null when an entry is not an origin. */
function originList(v: string): string[] | null {
  const list = v
    .split(',')
    .map((s) => s.trim())
    .filter(Boolean);
  try {
    compileOriginCheck(list);
    return list;
  } catch {
    return null;
  }
}

/** Every environment variable pyre reads, with its default. Read once, at start. */
const EnvSchema = z.object({
  PORT: intFromEnv(0, 65535).default(4000),
  HOST: optionalString,
  DATABASE_URL: optionalString.refine((v) => v === undefined || /^postgres(ql)?:\/\//.test(v), {
    message: 'must be a postgres:// or postgresql:// URL',
  }),
  DATA_DIR: z.string().min(1).default('./data'),
  AUTH_SECRET: optionalString.refine((v) => v === undefined || v.length >= 32, {
    message: 'must be at least 32 characters (use `openssl rand -hex 32`)',
  }),
  LONGPOLL_SECRET: optionalString.refine((v) => v === undefined || v.length >= 32, {
    message: 'must be at least 32 characters (use `openssl rand -hex 32`)',
  }),
  BUS_URL: optionalString.refine((v) => v === undefined || /^rediss?:\/\/[^\s]+$/.test(v), {
    message: "must be a redis:// or rediss:// URL (unset: the database's LISTEN/NOTIFY)",
  }),
  BUS_PREFIX: z
    .string()
    .regex(/^[A-Za-z0-9_:.-]{1,64}$/, 'must be 1 to 64 letters, digits or _ : . -')
    .default('pyre:'),
  TOKEN_MAX_TTL_SECONDS: intFromEnv(60, 30 * 24 * 3600).default(24 * 3600),
  REPLICATE_API_TOKEN: optionalString,
  REPLICATE_BASE_URL: z.url('must be an http(s) URL').default('https://api.replicate.com/v1'),
  REPLICATE_WEBHOOK_SECRET: optionalString,
  OPENAI_BASE_URL: z
    .url({ protocol: /^https?$/, error: 'must be an http(s) URL' })
    .default('https://api.openai.com/v1'),
  OPENAI_API_KEY: optionalString,
  OPENAI_MODELS: optionalString,
  PUBLIC_URL: optionalString.refine((v) => v === undefined || /^https?:\/\/[^\s]+$/.test(v), {
    message: 'must be an http(s) URL',
  }),
  CHECK_ORIGIN: optionalString,
  CORS_ORIGINS: optionalString.refine((v) => v === undefined || originList(v) !== null, {
    message: 'must be comma-separated origins like https://a.com or //*.b.com',
  }),
  LOG_LEVEL: z.enum(['fatal', 'error', 'warn', 'info', 'debug', 'trace', 'silent']).default('info'),
  LOG_FORMAT: z.enum(['auto', 'pretty', 'json']).default('auto'),
  /** Set by a WORKERS=N primary for its workers: they run on the primary's demo stand-in. Not for users. */
  PYRE_SHARED_DEMO_STANDIN: z.enum(['true', 'false']).default('false'),
  CLIENT_LOG_LINES_PER_10S: intFromEnv(0, 1_000_000).default(20),
  RUNNER_CONCURRENCY: intFromEnv(1, 1_000_000).default(2000),
  RUNNER_GLOBAL_CONCURRENCY: intFromEnv(1, 10_000_000).default(5000),
  RUNNER_USER_CONCURRENCY: intFromEnv(1, 10_000_000).default(200),
  RUNNER_MODEL_CONCURRENCY: intFromEnv(1, 10_000_000).default(2000),
  PROVIDER_CREATES_PER_MINUTE: intFromEnv(1, 10_000_000).default(600),
  PROVIDER_READS_PER_MINUTE: intFromEnv(1, 10_000_000).default(3000),
  RUNNER_ENABLED: z.enum(['true', 'false']).default('true'),
  WORKERS: intFromEnv(1, 64).default(1),
  RATE_LIMIT_TASKS_PER_MINUTE: intFromEnv(0, 10_000_000).default(600),
  HTTP_HEADERS_TIMEOUT_MS: intFromEnv(100, 600_000).default(10_000),
  HTTP_REQUEST_TIMEOUT_MS: intFromEnv(100, 3_600_000).default(30_000),
  HTTP_KEEP_ALIVE_TIMEOUT_MS: intFromEnv(100, 600_000).default(5_000),
  WS_UPGRADE_TIMEOUT_MS: intFromEnv(100, 60_000).default(5_000),
  MAX_CONNECTIONS_PER_ADDRESS: intFromEnv(0, 10_000_000).default(1000),
  WS_MAX_BUFFERED_TOTAL_BYTES: intFromEnv(0, Number.MAX_SAFE_INTEGER).default(128 * 1024 * 1024),
  METRICS_TOKEN: optionalString.refine((v) => v === undefined || v.length >= 16, {
    message: 'must be at least 16 characters',
  }),
  STORAGE_URL: optionalString,
  DATABASE_WAIT_SECONDS: intFromEnv(0, 3600).default(30),
  RETENTION_DAYS: intFromEnv(0, 36_500).default(0),
});

export type Env = z.infer<typeof EnvSchema>;

export interface Config {
  port: number;
  host: string;
  /** PostgreSQL URL, or undefined for the embedded PGlite database under dataDir. */
  databaseUrl: string | undefined;
  dataDir: string;
  /** undefined means open mode: one local user, loopback only. */
  authSecret: string | undefined;
  /**
   * The key long-poll session tokens are signed with in open mode, the same on every process of a
   * cluster (with AUTH_SECRET the key is derived from it). Unset in open mode: each process has a
   * key of its own, and a long-poll session is served only by the process that made it.
   */
  longpollSecret: string | undefined;
  /**
   * The cluster bus: `url` (BUS_URL) a Redis to use, with `prefix` (BUS_PREFIX) before its channel
   * name so that clusters can share one Redis; unset, the database's LISTEN/NOTIFY (PostgreSQL),
   * or no bus (embedded PGlite).
   */
  bus: { url: string | undefined; prefix: string };
  tokenMaxTtlSeconds: number;
  replicate: { apiToken: string | undefined; baseUrl: string; webhookSecret: string | undefined };
  /** true when no provider token is set: tasks run on the built-in Replicate stand-in. */
  demoMode: boolean;
  /**
   * An OpenAI-compatible chat completions endpoint (OpenAI, vLLM, Ollama, llama.cpp, OpenRouter)
   * and the models served on it (OPENAI_MODELS; none: the provider is off). Without an API key
   * the models run on the built-in stand-in (demo); in demo mode with no OPENAI_MODELS and no
   * key, the models are DEMO_OPENAI_MODELS.
   */
  openai: { baseUrl: string; apiKey: string | undefined; models: OpenAIModelSetting[] };
  publicUrl: string | undefined;
  /** Allowed browser origins; undefined means "the gateway's own host". */
  checkOrigin: string[] | undefined;
  /** Browser origins allowed to call the REST API (CORS); undefined means none. */
  corsOrigins: string[] | undefined;
  logLevel: string;
  /** auto: readable lines on a terminal, JSON elsewhere. */
  logFormat: 'auto' | 'pretty' | 'json';
  /** A WORKERS=N worker on its primary's demo stand-in (it has the stand-in's token, so demoMode is false). */
  sharedDemoStandin: boolean;
  /** Log lines of one kind clients may cause per 10 s (access lines per client and status class, realtime lines per message); 0: no limit. */
  clientLogLinesPer10s: number;
  /**
   * Predictions in flight: `concurrency` in this process; `global`, `perUser` and `perModel` over
   * all processes on the database (counted by the claim).
   */
  runner: { enabled: boolean; concurrency: number; global: number; perUser: number; perModel: number };
  /** Provider requests a minute, shared by this process's tasks (token buckets allowing bursts). */
  providerBudgets: { createsPerMinute: number; readsPerMinute: number };
  workers: number;
  /** Task submissions a user may make a minute (0: no limit). */
  rateLimitTasksPerMinute: number;
  /** Limits on idle and slow connections (see docs/configuration.md). */
  connections: {
    /** A connection's request headers must be complete this long after it opened or its last request. */
    headersTimeoutMs: number;
    /** A whole request (headers and body) must arrive within this. */
    requestTimeoutMs: number;
    /** An idle keep-alive connection is closed after this. */
    keepAliveTimeoutMs: number;
    /** A WebSocket upgrade must be answered within this once its headers are in. */
    upgradeTimeoutMs: number;
    /** Open TCP connections one remote address may hold (0: no cap). */
    maxPerAddress: number;
    /** Unsent WebSocket bytes allowed across all sockets; over it the largest non-readers are cut (0: none). */
    maxTotalBufferedBytes: number;
  };
  /** When set, GET /metrics needs it as a bearer token. */
  metricsToken: string | undefined;
  /** An S3-compatible object store for output files; undefined means DATA_DIR/outputs. */
  storage: S3Settings | undefined;
  /** How long start waits for an unreachable DATABASE_URL to come up. */
  databaseWaitSeconds: number;
  /** Finished tasks older than this many days are deleted with their events and files (0: kept for ever). */
  retentionDays: number;
}

/** One OPENAI_MODELS entry: the name clients use, and the endpoint's model id (`name=id`, or both the same). */
export interface OpenAIModelSetting {
  name: string;
  id: string;
}

/** The OPENAI_MODELS of demo mode when none is set: served by the built-in stand-in (made-up text). */
export const DEMO_OPENAI_MODELS = 'gpt-4o-mini';

const MODEL_NAME = /^[A-Za-z0-9][\w.:/@+-]{0,99}$/;

/** OPENAI_MODELS: `a,b=vendor/b-1.5:latest`; throws the problem (the caller names the variable). */
function parseOpenAIModels(v: string | undefined): OpenAIModelSetting[] {
  if (v === undefined) return [];
  const out: OpenAIModelSetting[] = [];
  for (const entry of v.split(',').map((s) => s.trim())) {
    if (entry === '') throw new Error('has an empty entry (a stray comma?)');
    const eq = entry.indexOf('=');
    const [name, id] = eq < 0 ? [entry, entry] : [entry.slice(0, eq).trim(), entry.slice(eq + 1).trim()];
    if (!MODEL_NAME.test(name))
      throw new Error(`${JSON.stringify(name)} is not a model name (letters, digits and . _ : / @ + -, up to 100)`);
    if (id === '' || /\s/.test(id))
      throw new Error(`${JSON.stringify(entry)}: the model id after = is empty or has spaces`);
    if (out.some((m) => m.name === name)) throw new Error(`names ${name} twice`);
    out.push({ name, id });
  }
  return out;
}

/** A setting that cannot be used; the message names the variable. */
export class ConfigError extends Error {
  constructor(public readonly problems: string[]) {
    super(`invalid configuration:\n  ${problems.join('\n  ')}`);
  }
}

/** Parse and validate the environment. Throws ConfigError naming every bad variable. */
export function loadConfig(env: NodeJS.ProcessEnv = process.env): Config {
  // A variable set to nothing (`PORT=`) is unset, as in most shells' and Compose files' intent.
  const given = Object.fromEntries(Object.entries(env).filter(([, v]) => v !== undefined && v.trim() !== ''));
  const parsed = EnvSchema.safeParse(given);
  if (!parsed.success) {
    throw new ConfigError(parsed.error.issues.map((i) => `${i.path.join('.')}: ${i.message}`));
  }
  const e = parsed.data;
  const openMode = e.AUTH_SECRET === undefined;
  const host = e.HOST ?? '127.0.0.1';
  if (openMode && !LOOPBACK.has(host)) {
    throw new ConfigError([
      `HOST: ${host} is not a loopback address, and AUTH_SECRET is unset (open mode listens on loopback only); set AUTH_SECRET to serve other hosts`,
    ]);
  }
  if (e.HTTP_HEADERS_TIMEOUT_MS > e.HTTP_REQUEST_TIMEOUT_MS) {
    throw new ConfigError([
      `HTTP_HEADERS_TIMEOUT_MS: must not be more than HTTP_REQUEST_TIMEOUT_MS (${e.HTTP_REQUEST_TIMEOUT_MS}); the headers are part of the request`,
    ]);
  }
  let openaiModels: OpenAIModelSetting[];
  try {
    // Demo mode shows both providers: with no OPENAI_* model or key, the demo list runs on the
    // OpenAI-compatible stand-in beside the Replicate one.
    const demo = e.REPLICATE_API_TOKEN === undefined || e.PYRE_SHARED_DEMO_STANDIN === 'true';
    const unset = e.OPENAI_MODELS === undefined && e.OPENAI_API_KEY === undefined;
    openaiModels = parseOpenAIModels(demo && unset ? DEMO_OPENAI_MODELS : e.OPENAI_MODELS);
  } catch (err) {
    throw new ConfigError([`OPENAI_MODELS: ${(err as Error).message}`]);
  }
  if (e.OPENAI_API_KEY !== undefined && openaiModels.length === 0) {
    throw new ConfigError([
      'OPENAI_MODELS: OPENAI_API_KEY is set but no model is; list the models to serve on OPENAI_BASE_URL (e.g. OPENAI_MODELS=gpt-4o-mini)',
    ]);
  }
  let storage: S3Settings | undefined;
  if (e.STORAGE_URL !== undefined) {
    try {
      storage = parseStorageUrl(e.STORAGE_URL, env);
    } catch (err) {
      throw new ConfigError([`STORAGE_URL: ${(err as Error).message}`]);
    }
  }
  if (e.WORKERS > 1 && e.DATABASE_URL === undefined) {
    throw new ConfigError([
      'WORKERS: several worker processes need a shared database; set DATABASE_URL (embedded PGlite belongs to one process)',
    ]);
  }
  return {
    port: e.PORT,
    host,
    databaseUrl: e.DATABASE_URL,
    dataDir: path.resolve(e.DATA_DIR),
    authSecret: e.AUTH_SECRET,
    longpollSecret: e.LONGPOLL_SECRET,
    bus: { url: e.BUS_URL, prefix: e.BUS_PREFIX },
    tokenMaxTtlSeconds: e.TOKEN_MAX_TTL_SECONDS,
    replicate: {
      apiToken: e.REPLICATE_API_TOKEN,
      baseUrl: e.REPLICATE_BASE_URL.replace(/\/+$/, ''),
      webhookSecret: e.REPLICATE_WEBHOOK_SECRET,
    },
    demoMode: e.REPLICATE_API_TOKEN === undefined,
    openai: { baseUrl: e.OPENAI_BASE_URL.replace(/\/+$/, ''), apiKey: e.OPENAI_API_KEY, models: openaiModels },
    publicUrl: e.PUBLIC_URL?.replace(/\/+$/, ''),
    corsOrigins: e.CORS_ORIGINS === undefined ? undefined : originList(e.CORS_ORIGINS)!,
    checkOrigin: e.CHECK_ORIGIN?.split(',')
      .map((s) => s.trim())
      .filter(Boolean),
    logLevel: e.LOG_LEVEL,
    logFormat: e.LOG_FORMAT,
    sharedDemoStandin: e.PYRE_SHARED_DEMO_STANDIN === 'true',
    clientLogLinesPer10s: e.CLIENT_LOG_LINES_PER_10S,
    runner: {
      enabled: e.RUNNER_ENABLED === 'true',
      concurrency: e.RUNNER_CONCURRENCY,
      global: e.RUNNER_GLOBAL_CONCURRENCY,
      perUser: e.RUNNER_USER_CONCURRENCY,
      perModel: e.RUNNER_MODEL_CONCURRENCY,
    },
    providerBudgets: { createsPerMinute: e.PROVIDER_CREATES_PER_MINUTE, readsPerMinute: e.PROVIDER_READS_PER_MINUTE },
    workers: e.WORKERS,
    rateLimitTasksPerMinute: e.RATE_LIMIT_TASKS_PER_MINUTE,
    connections: {
      headersTimeoutMs: e.HTTP_HEADERS_TIMEOUT_MS,
      requestTimeoutMs: e.HTTP_REQUEST_TIMEOUT_MS,
      keepAliveTimeoutMs: e.HTTP_KEEP_ALIVE_TIMEOUT_MS,
      upgradeTimeoutMs: e.WS_UPGRADE_TIMEOUT_MS,
      maxPerAddress: e.MAX_CONNECTIONS_PER_ADDRESS,
      maxTotalBufferedBytes: e.WS_MAX_BUFFERED_TOTAL_BYTES,
    },
    storage,
    databaseWaitSeconds: e.DATABASE_WAIT_SECONDS,
    retentionDays: e.RETENTION_DAYS,
    metricsToken: e.METRICS_TOKEN,
  };
}
