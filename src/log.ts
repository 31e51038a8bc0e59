import pino, { type Logger } from 'pino';

export type { Logger };

/**
 * The process logger: JSON lines on stdout. Secrets never reach a line: the
 * redact paths below cover the places a token, key or prompt could travel.
 */
export function createLogger(opts: { level?: string; destination?: pino.DestinationStream } = {}): Logger {
  return pino(
    {
      level: opts.level ?? process.env.LOG_LEVEL ?? 'info',
      base: { app: 'pyre' },
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
    opts.destination ?? pino.destination({ dest: 1, sync: false }),
  );
}

/** A logger that drops everything, for tests that do not read logs. */
export function silentLogger(): Logger {
  return pino({ level: 'silent' });
}
