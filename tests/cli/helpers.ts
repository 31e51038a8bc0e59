import { spawn } from 'node:child_process';
import path from 'node:path';
import { buildCli } from '../../src/cli/main';

const BIN = path.join(__dirname, '..', '..', 'bin', 'pyre.js');

export interface Run {
  code: number | null;
  stdout: string;
  stderr: string;
}

/**
 * `node bin/pyre.js ...args` as a user would run it, with only the env given (plus PATH). For what
 * needs a process of its own: a pipe closed under it, the PATH it looks itself up in, a lock held
 * by another pid. Everything else runs in this process (`pyreIn`), which is much faster.
 */
export function pyre(
  args: string[],
  env: Record<string, string> = {},
  timeoutMs = 45_000,
  opts: { closeStdoutOnData?: boolean } = {},
): Promise<Run> {
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, [BIN, ...args], {
      env: { PATH: process.env.PATH ?? '', HOME: process.env.HOME ?? '/tmp', ...env },
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (d) => {
      stdout += d;
      // A reader that stops early, as `| head -c 30` does: the pipe closes under the writer.
      if (opts.closeStdoutOnData) child.stdout.destroy();
    });
    child.stderr.on('data', (d) => (stderr += d));
    const timer = setTimeout(() => {
      child.kill('SIGKILL');
      reject(
        new Error(`pyre ${args.join(' ')} did not exit within ${timeoutMs} ms\nstdout: ${stdout}\nstderr: ${stderr}`),
      );
    }, timeoutMs);
    child.on('error', reject);
    child.on('close', (code) => {
      clearTimeout(timer);
      resolve({ code, stdout, stderr });
    });
  });
}

/** What `process.exit` throws while a command runs in this process. */
class Exited {
  constructor(readonly code: number) {}
}

/** The variables the commands read; a run sees only those it is given. */
const CLI_ENV = ['PYRE_URL', 'PYRE_TOKEN', 'PYRE_RECONNECT_GIVE_UP_MS'];

let queue: Promise<unknown> = Promise.resolve();

/**
 * The same command run in this process: its stdout, stderr and exit code captured (stdout and
 * stderr are not terminals, as with `pyre`). Runs one at a time, as they share the process's streams.
 */
export function pyreIn(args: string[], env: Record<string, string> = {}): Promise<Run> {
  const run = queue.then(() => runInProcess(args, env));
  queue = run.catch(() => {});
  return run;
}

async function runInProcess(args: string[], env: Record<string, string>): Promise<Run> {
  const out = { stdout: '', stderr: '' };
  const saved = {
    env: Object.fromEntries(CLI_ENV.map((k) => [k, process.env[k]])),
    stdout: process.stdout.write,
    stderr: process.stderr.write,
    exit: process.exit,
    stderrTty: Object.getOwnPropertyDescriptor(process.stderr, 'isTTY'),
  };
  for (const k of CLI_ENV) delete process.env[k];
  Object.assign(process.env, env);
  const capture = (key: 'stdout' | 'stderr') =>
    ((chunk: string | Uint8Array) => {
      out[key] += typeof chunk === 'string' ? chunk : Buffer.from(chunk).toString('utf8');
      return true;
    }) as typeof process.stdout.write;
  process.stdout.write = capture('stdout');
  process.stderr.write = capture('stderr');
  Object.defineProperty(process.stderr, 'isTTY', { value: false, configurable: true });
  process.exit = ((code?: number) => {
    throw new Exited(code ?? 0);
  }) as typeof process.exit;
  try {
    await buildCli().parseAsync(['node', 'pyre', ...args]);
    return { code: 0, ...out };
  } catch (err) {
    if (err instanceof Exited) return { code: err.code, ...out };
    throw err;
  } finally {
    process.stdout.write = saved.stdout;
    process.stderr.write = saved.stderr;
    process.exit = saved.exit;
    if (saved.stderrTty) Object.defineProperty(process.stderr, 'isTTY', saved.stderrTty);
    else delete (process.stderr as { isTTY?: boolean }).isTTY;
    for (const k of CLI_ENV) {
      if (saved.env[k] === undefined) delete process.env[k];
      else process.env[k] = saved.env[k];
    }
  }
}
