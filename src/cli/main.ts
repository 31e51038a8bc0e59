import { Command, InvalidArgumentError, Option } from 'commander';
import { TokenSigner } from '../auth/tokens';
import { ConfigError, loadConfig } from '../config';
import fs from 'node:fs';
import path from 'node:path';
import { CliError, DEFAULT_URL, EXIT, pyreCommand } from './client';
import { quietOnClosedPipes } from './pipe';
import { submit, TYPES } from './submit';
import { listTasks } from './tasks';
import { cancelTask, getTask, listModels, taskEvents, watchTask } from './task-commands';

// The server side (database, gateway, stand-in) loads only for the commands that run it,
// so `pyre submit` and `pyre tasks` start quickly.
// A synchronous require is the way to load a module lazily from CommonJS: import() would go through
// Node's ESM loader, which tsx/cjs (bin/pyre.js in a checkout) does not hook.
/* eslint-disable @typescript-eslint/no-require-imports -- lazy loading, see above */
const lazy = {
  main: () => (require('../main') as typeof import('../main')).main,
  db: () => require('../db') as typeof import('../db'),
  standin: () => (require('./standin') as typeof import('./standin')).runStandin,
  startup: () => require('../startup') as typeof import('../startup'),
};
/* eslint-enable @typescript-eslint/no-require-imports */

/** Exit codes: see EXIT in ./client (0 ok, 1 failure, 2 usage, 69 unavailable, 77 no permission, 78 config, ...). */
export { EXIT };

function fail(message: string, code: number = EXIT.failure): never {
  process.stderr.write(`pyre: ${message}\n`);
  process.exit(code);
}

/** Runs a command's action; a CliError becomes its message and exit code. */
function run<A extends unknown[]>(action: (...args: A) => Promise<number | void>) {
  return async (...args: A) => {
    try {
      const code = await action(...args);
      // Leave now: a socket's timers must not keep a finished command alive.
      process.exit(code ?? EXIT.ok);
    } catch (err) {
      if (err instanceof CliError) fail(err.message, err.exitCode);
      throw err;
    }
  };
}

const TASK_STATUSES = ['queued', 'processing', 'succeeded', 'failed', 'canceled'];

/** --url and --token, shared by the commands that talk to a running gateway. */
function clientOptions(cmd: Command): Command {
  return cmd
    .option('--url <url>', `the gateway (env PYRE_URL, default ${DEFAULT_URL})`)
    .option('--token <token>', 'a token from `pyre token` (env PYRE_TOKEN; not needed in open mode)');
}

const collect = (v: string, prev: string[]) => [...prev, v];

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

/** The version in the package.json above this file (src/cli in a checkout, dist/src/cli built). */
function packageVersion(): string {
  let dir = __dirname;
  while (!fs.existsSync(path.join(dir, 'package.json')) && path.dirname(dir) !== dir) dir = path.dirname(dir);
  try {
    return String(JSON.parse(fs.readFileSync(path.join(dir, 'package.json'), 'utf8')).version);
  } catch {
    return 'unknown';
  }
}

/** An unknown `--watch` (a natural guess) names the command that does it. */
function withHints(message: string): string {
  if (/unknown option '--watch'/.test(message))
    return `${message.trimEnd()} (to follow a task: ${pyreCommand()} watch <id>; ${pyreCommand()} submit follows its task unless --detach)\n`;
  return message;
}

export function buildCli(): Command {
  quietOnClosedPipes();
  const program = new Command('pyre')
    .description('pyre: a Phoenix-channels-compatible realtime gateway for AI generation tasks')
    .version(packageVersion(), '-V, --version', 'print the version')
    .exitOverride((err) => process.exit(err.exitCode === 0 ? 0 : EXIT.usage))
    .configureOutput({ outputError: (s, write) => write(`pyre: ${withHints(s.replace(/^error: /, ''))}`) });
  serverCommands(program);
  submitCommand(program);
  taskCommands(program);
  return program;
}

/** The commands that run pyre's own processes: start, migrate, token, standin. */
function serverCommands(program: Command): void {
  program
    .command('start')
    .description('run the gateway (configuration from the environment, see docs/configuration.md)')
    .action(async () => {
      config(); // a configuration mistake is said at once, before the server side loads (about 1 CPU-s)
      await lazy.main()();
    });

  program
    .command('migrate')
    .description('bring the database schema up to date')
    .action(async () => {
      const c = config();
      const { migrate, openDatabase } = lazy.db();
      let db: ReturnType<typeof openDatabase>;
      try {
        db = openDatabase({ databaseUrl: c.databaseUrl, pgliteDir: path.join(c.dataDir, 'pglite') });
      } catch (err) {
        const problem = lazy.startup().explainStartupError(err, c);
        if (problem) fail(problem.message, problem.exitCode);
        throw err;
      }
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
  standinCommand(program);
}

function standinCommand(program: Command): void {
  program
    .command('standin')
    .description('run the Replicate stand-in (simulated models) for a gateway to use')
    .option(
      '--port <port>',
      'port (0 picks a free one)',
      (v) => {
        if (!/^\d+$/.test(v) || Number(v) > 65535) throw new InvalidArgumentError('must be a port number (0-65535)');
        return Number(v);
      },
      Number(process.env.STANDIN_PORT ?? 8788),
    )
    .option('--host <host>', 'address to listen on', process.env.STANDIN_HOST ?? '127.0.0.1')
    .addOption(
      new Option('--preset <preset>', 'timelines: demo (a few seconds), realistic, or minutes (load tests)')
        .choices(['demo', 'realistic', 'minutes'])
        .default(process.env.STANDIN_PRESET ?? 'demo'),
    )
    .option(
      '--speed <factor>',
      'run the clock this many times faster than real time',
      (v) => {
        if (!(Number(v) > 0)) throw new InvalidArgumentError('must be a positive number');
        return Number(v);
      },
      Number(process.env.STANDIN_SPEED ?? 1),
    )
    .option('--virtual', 'a virtual clock, moved by POST /__admin/clock/advance')
    .action(run((opts) => lazy.standin()(opts)));
}

/** --json, --timeout and --quiet, shared by the commands that follow a task. */
function followOptions(cmd: Command): Command {
  return cmd
    .option('--json', 'print the finished task as JSON instead of its URLs or text')
    .option('--timeout <seconds>', 'give up waiting after this long (exit 124; the task keeps running)', positiveInt)
    .option('-q, --quiet', 'no progress on stderr');
}

function submitCommand(program: Command): void {
  followOptions(
    clientOptions(
      program
        .command('submit')
        .description('create a task, follow it live with a progress bar (stderr), print the result (stdout)')
        .argument('<prompt...>', 'the prompt (`-` reads it from standard input)')
        .addOption(new Option('--type <type>', 'what to make (default: text, as the API)').choices(TYPES))
        .option('--model <model>', "a model from `pyre models` (default: the type's default)")
        .option(
          '--param <name=value>',
          'a model parameter; repeat for more (e.g. --param aspect_ratio=16:9)',
          collect,
          [] as string[],
        ),
    )
      .option('--detach', 'print the task id and return at once (follow it later with `pyre watch <id>`)')
      .addOption(new Option('--watch', 'follow the task to its end (the default)').hideHelp()),
  ).action(run((prompt: string[], opts) => submit(prompt, opts)));
}

/** The commands about existing tasks (and the models they run on). */
function taskCommands(program: Command): void {
  clientOptions(
    program
      .command('tasks')
      .description('list your tasks, newest first (a failed task with its error)')
      .addOption(new Option('--status <status>', 'only tasks in this state').choices(TASK_STATUSES))
      .option('--limit <n>', 'how many (1-200, default 50)', positiveInt)
      .option('--cursor <cursor>', 'the page after the one that printed this cursor (older tasks)')
      .option('--json', 'the API answer as JSON'),
  ).action(run(listTasks));
  followOptions(
    clientOptions(
      program.command('watch').description('follow a task (running or finished) to its end, as submit does'),
    ),
  )
    .argument('<id>', 'the task id')
    .action(run((id: string, opts) => watchTask(id, opts)));
  clientOptions(program.command('get').description('show a task').argument('<id>', 'the task id'))
    .option('--json', 'the API answer as JSON')
    .option('--watch', 'follow the task to its end (as `pyre watch <id>`)')
    .option('--timeout <seconds>', 'with --watch: give up waiting after this long (exit 124)', positiveInt)
    .option('-q, --quiet', 'with --watch: no progress on stderr')
    .action(run((id: string, opts) => (opts.watch ? watchTask(id, opts) : getTask(id, opts))));
  clientOptions(program.command('cancel').description('cancel a task').argument('<id>', 'the task id'))
    .option('--json', 'the task as JSON')
    .action(run((id: string, opts) => cancelTask(id, opts)));
  clientOptions(program.command('events').description("a task's event log").argument('<id>', 'the task id'))
    .option('--after <seq>', 'only the events after this seq', (v) => {
      if (!/^\d+$/.test(v)) throw new InvalidArgumentError('must be a non-negative whole number');
      return Number(v);
    })
    .option('--json', 'the API answer as JSON')
    .action(run((id: string, opts) => taskEvents(id, opts)));
  clientOptions(program.command('models').description('the models --model takes, by type'))
    .option('--json', 'the API answer as JSON')
    .action(run(listModels));
}

if (require.main === module) {
  buildCli()
    .parseAsync(process.argv)
    .catch((err) => fail(err instanceof Error ? err.message : String(err)));
}
