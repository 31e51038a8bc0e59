import { ConfigError, loadConfig } from '../../src/config';

/** What loadConfig says of `env`: its ConfigError's message, or 'no error'. Other errors are thrown. */
export function configProblems(env: Record<string, string>): string {
  try {
    loadConfig(env);
  } catch (e) {
    if (e instanceof ConfigError) return e.message;
    throw e;
  }
  return 'no error';
}
