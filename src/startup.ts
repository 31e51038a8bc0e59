import net from 'node:net';
import { EmbeddedDatabaseInUseError } from './db';
import type { Config } from './config';

/** A start-up failure the user can fix: one line on stderr, and the exit code (sysexits). */
export interface StartupProblem {
  message: string;
  /** 69 (EX_UNAVAILABLE): something is held or down; 78 (EX_CONFIG): a setting to change. */
  exitCode: 69 | 78;
}

/** PORT and HOST as said in messages. */
const where = (config: Pick<Config, 'host' | 'port'>) => `${config.host}:${config.port}`;

/**
 * Whether this process can listen on PORT/HOST, checked before anything else runs (migrations, the
 * demo stand-in), so a port in use is said at once. A real listen, closed at once; PORT=0 always fits.
 */
export async function checkListenAddress(
  config: Pick<Config, 'host' | 'port' | 'dataDir'>,
): Promise<StartupProblem | null> {
  if (config.port === 0) return null;
  const probe = net.createServer();
  try {
    await new Promise<void>((resolve, reject) => {
      probe.once('error', reject);
      probe.listen({ port: config.port, host: config.host, exclusive: true }, () => resolve());
    });
    return null;
  } catch (err) {
    return (
      explainStartupError(err, config) ?? {
        message: `cannot listen on ${where(config)}: ${(err as Error).message}`,
        exitCode: 69,
      }
    );
  } finally {
    await new Promise<void>((resolve) => probe.close(() => resolve()));
  }
}

/**
 * A start-up error the user can fix, in one line; null for anything else (a bug: its stack is
 * worth printing).
 */
export function explainStartupError(
  err: unknown,
  config: Pick<Config, 'host' | 'port' | 'dataDir'>,
): StartupProblem | null {
  if (err instanceof EmbeddedDatabaseInUseError) return { message: err.message, exitCode: 69 };
  const e = err as NodeJS.ErrnoException & { address?: string; port?: number };
  switch (e?.code) {
    case 'EADDRINUSE':
      return {
        message: `port ${config.port} on ${config.host} is in use by another program (another pyre?): stop it, or set PORT to a free port`,
        exitCode: 69,
      };
    case 'EADDRNOTAVAIL':
      return {
        message: `HOST ${config.host} is not an address of this machine: set HOST to one of its addresses (or 0.0.0.0)`,
        exitCode: 78,
      };
    case 'EACCES':
    case 'EPERM':
    case 'EROFS':
    case 'ENOTDIR':
    case 'EEXIST':
    case 'ENOSPC':
      if (e.syscall === 'listen' || e.syscall === 'bind')
        return {
          message: `not allowed to listen on ${where(config)} (${e.code}): set PORT to 1024 or above`,
          exitCode: 78,
        };
      if (e.path)
        return {
          message: `cannot write to ${e.path} (${e.code}): DATA_DIR (${config.dataDir}) must be a writable directory`,
          exitCode: 78,
        };
      return null;
    default:
      return null;
  }
}
