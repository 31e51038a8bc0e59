import { spawn, type ChildProcess } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import readline from 'node:readline';
import { testBusEnv } from './bus';
import { PGLITE_TEMPLATE } from './db';

/** The child's entry point: a gateway configured from its environment. */
const CHILD = path.join(__dirname, 'gateway-child.ts');
const ROOT = path.join(__dirname, '..', '..');

export interface GatewayProcess {
  url: string;
  owner: string;
  pid: number;
  /** Parsed JSON log lines, as they arrive. */
  logs: Array<Record<string, unknown>>;
  stderr: string[];
  /** SIGKILL (kill -9): no cleanup at all. */
  kill9(): Promise<void>;
  /** SIGTERM: a graceful stop. Resolves when the process has exited. */
  stop(): Promise<void>;
  exited: Promise<number | null>;
}

/**
 * How to run a fixture: its JavaScript compiled by the run's global setup (plain node, about 1 CPU-s
 * less a start than tsx's loader), or the TypeScript through tsx when there is none.
 */
function fixtureArgs(fixture: string): string[] {
  const compiledDir = process.env.PYRE_TEST_COMPILED_DIR;
  if (compiledDir) {
    const compiled = path.join(compiledDir, path.relative(ROOT, fixture).replace(/\.ts$/, '.js'));
    if (fs.existsSync(compiled)) return [compiled];
  }
  return ['--import', 'tsx', fixture];
}

/** Starts a gateway (or another fixture of tests/fixtures) in a child process and waits until it listens. */
export async function spawnGateway(
  env: Record<string, string>,
  timeoutMs = 90_000,
  fixture = CHILD,
): Promise<GatewayProcess> {
  const child: ChildProcess = spawn(process.execPath, fixtureArgs(fixture), {
    env: {
      PATH: process.env.PATH,
      HOME: process.env.HOME,
      PORT: '0',
      HOST: '127.0.0.1',
      LOG_LEVEL: 'info',
      ...(PGLITE_TEMPLATE ? { PYRE_TEST_PGLITE_TEMPLATE: PGLITE_TEMPLATE } : {}),
      ...(process.env.PYRE_TEST_PGLITE_TEMPLATE_DIR
        ? { PYRE_TEST_PGLITE_TEMPLATE_DIR: process.env.PYRE_TEST_PGLITE_TEMPLATE_DIR }
        : {}),
      // Gateways on PostgreSQL use the run's bus engine (PYRE_TEST_BUS).
      ...(env.PYRE_FIXTURE_PG_URL ? testBusEnv() : {}),
      ...env,
    },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  const logs: Array<Record<string, unknown>> = [];
  const stderr: string[] = [];
  const exited = new Promise<number | null>((resolve) => child.once('exit', (code) => resolve(code)));
  let ready: (v: { url: string; owner: string }) => void;
  const readyP = new Promise<{ url: string; owner: string }>((r) => (ready = r));
  readline.createInterface({ input: child.stdout! }).on('line', (line) => {
    try {
      const o = JSON.parse(line) as Record<string, unknown>;
      if (o.fixture === 'ready') ready({ url: o.url as string, owner: o.owner as string });
      else logs.push(o);
    } catch {
      /* not a log line */
    }
  });
  readline.createInterface({ input: child.stderr! }).on('line', (line) => stderr.push(line));
  let timer: NodeJS.Timeout | undefined;
  const started = await Promise.race([
    readyP,
    exited.then((code) => {
      throw new Error(`gateway process exited (${code}) before listening: ${stderr.join('\n')}`);
    }),
    new Promise<never>((_, reject) => {
      timer = setTimeout(
        () => reject(new Error(`gateway process did not start in ${timeoutMs} ms: ${stderr.join('\n')}`)),
        timeoutMs,
      );
    }),
  ]).finally(() => clearTimeout(timer));
  return {
    ...started,
    pid: child.pid!,
    logs,
    stderr,
    exited,
    kill9: async () => {
      if (child.exitCode === null && child.signalCode === null) child.kill('SIGKILL');
      await exited;
    },
    stop: async () => {
      if (child.exitCode === null && child.signalCode === null) child.kill('SIGTERM');
      const t = setTimeout(() => child.kill('SIGKILL'), 15_000);
      await exited;
      clearTimeout(t);
    },
  };
}
