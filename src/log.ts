import pino, { type Logger } from 'pino';
import pretty from 'pino-pretty';

export type { Logger };

/** `json`: one JSON object a line (for log collectors); `pretty`: a readable line (a terminal). */
export type LogFormat = 'json' | 'pretty';

/** LOG_FORMAT=auto: readable lines on a terminal, JSON anywhere else (a file, a pipe, a container's log). */
export function resolveLogFormat(setting: LogFormat | 'auto', out: { isTTY?: boolean } = process.stdout): LogFormat {
  if (setting !== 'auto') return setting;
  return out.isTTY ? 'pretty' : 'json';
}

/** Readable lines (`12:00:01 WARN (worker 2): DEMO MODE: …`, fields below), written synchronously to stdout. */
function prettyStream(): pino.DestinationStream {
  return pretty({
    sync: true,
    colorize: pretty.isColorSupported,
    translateTime: 'SYS:HH:MM:ss',
    ignore: 'pid,hostname,app,worker',
    messageFormat: '{if worker}(worker {worker}) {end}{msg}',
    singleLine: false,
  });
}

/**
 * The process logger: JSON lines on stdout, or readable lines (`format: 'pretty'`). Secrets never
 * reach a line: the redact paths below cover the places a token, key or prompt could travel.
 * `worker`: a WORKERS=N worker's number, carried by every line.
 */
export function createLogger(
  opts: { level?: string; destination?: pino.DestinationStream; format?: LogFormat; worker?: number } = {},
): Logger {
  return pino(
    {
      level: opts.level ?? process.env.LOG_LEVEL ?? 'info',
      base: { app: 'pyre', ...(opts.worker !== undefined ? { worker: opts.worker } : {}) },
      redact: {
        paths: [
          'token',
          '*.token',
          'authorization',
          '*.authorization',
          'headers.authorization',
          'req.headers.authorization',
          'prompt',
          '*.prompt',
          'input_data.prompt',
          '*.input_data.prompt',
          'api_key',
          '*.api_key',
          'secret',
          '*.secret',
        ],
        censor: '[redacted]',
      },
    },
    // Asynchronous writes: a busy gateway coalesces log lines instead of one write() each.
    opts.destination ?? (opts.format === 'pretty' ? prettyStream() : pino.destination({ dest: 1, sync: false })),
  );
}

/** A logger that drops everything, for tests that do not read logs. */
export function silentLogger(): Logger {
  return pino({ level: 'silent' });
}
