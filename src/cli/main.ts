import { Command, InvalidArgumentError } from 'commander';
import { TokenSigner } from '../auth/tokens';
import { ConfigError, loadConfig } from '../config';
import { migrate, openDatabase } from '../db';
import path from 'node:path';
import { main } from '../main';

/** Exit codes: 0 ok, 1 failure, 2 bad usage, 78 bad configuration. */
export const EXIT = { ok: 0, failure: 1, usage: 2, config: 78 } as const;

function fail(message: string, code: number = EXIT.failure): never {
  process.stderr.write(`pyre: ${message}\n`);
  process.exit(code);
}

function config() {
  try {
    return loadConfig();
  } catch (err) {
    if (err instanceof ConfigError) fail(err.message, EXIT.config);
    throw err;
  }
}

const positiveInt = (v: string) => {
  if (!/^\d+$/.test(v) || Number(v) < 1) throw new InvalidArgumentError('must be a positive whole number');
  return Number(v);
};

export function buildCli(): Command {
  const program = new Command('pyre')
    .description('pyre: a Phoenix-channels-compatible realtime gateway for AI generation tasks')
    .exitOverride((err) => process.exit(err.exitCode === 0 ? 0 : EXIT.usage))
    .configureOutput({ outputError: (s, write) => write(`pyre: ${s.replace(/^error: /, '')}`) });

  program
    .command('start')
    .description('run the gateway (configuration from the environment, see README)')
    .action(async () => {
      await main();
    });

  program
    .command('migrate')
    .description('bring the database schema up to date')
    .action(async () => {
      const c = config();
      const db = openDatabase({ databaseUrl: c.databaseUrl, pgliteDir: path.join(c.dataDir, 'pglite') });
      try {
        const applied = await migrate(db);
        process.stdout.write(applied.length ? `applied: ${applied.join(', ')}\n` : 'already up to date\n');
      } finally {
        await db.destroy();
      }
    });

  program
    .command('token')
    .description('mint a signed token for a user (needs AUTH_SECRET)')
    .requiredOption('--user <name>', 'the user id the token names')
    .option('--ttl <seconds>', 'lifetime in seconds (at most TOKEN_MAX_TTL_SECONDS, 24 h by default)', positiveInt)
    .action((opts: { user: string; ttl?: number }) => {
      const c = config();
      if (!c.authSecret) fail('AUTH_SECRET is unset: pyre is in open mode and needs no tokens', EXIT.config);
      try {
        process.stdout.write(`${new TokenSigner(c.authSecret, c.tokenMaxTtlSeconds).mint(opts.user, opts.ttl)}\n`);
      } catch (err) {
        fail((err as Error).message, EXIT.usage);
      }
    });

  return program;
}

if (require.main === module) {
  buildCli()
    .parseAsync(process.argv)
    .catch((err) => fail(err instanceof Error ? err.message : String(err)));
}
