import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import net from 'node:net';
import { freePort } from './net';
import { waitFor } from './wait';

/** Why a private Redis cannot run here (no `redis-server`), or undefined. */
export function ownRedisUnavailable(): string | undefined {
  const r = spawnSync('redis-server', ['--version'], { encoding: 'utf8' });
  return r.error ? `redis-server is not installed (${r.error.message})` : undefined;
}

export interface OwnRedis {
  url: string;
  /** SIGKILL: gone at once, nothing saved (it keeps nothing anyway). */
  kill9(): Promise<void>;
  /** Starts again on the same port. */
  restart(): Promise<void>;
  stop(): Promise<void>;
}

/** A Redis of the test's own (`redis-server --port N`, no persistence) that it may kill. */
export async function startOwnRedis(): Promise<OwnRedis> {
  const port = await freePort();
  let child: ChildProcess | undefined;
  const up = async () => {
    child = spawn('redis-server', ['--port', String(port), '--bind', '127.0.0.1', '--save', '', '--appendonly', 'no'], {
      stdio: 'ignore',
    });
    await waitFor(
      `redis-server on port ${port}`,
      () =>
        new Promise<boolean>((resolve) => {
          const s = net.connect(port, '127.0.0.1');
          s.once('connect', () => (s.end(), resolve(true)));
          s.once('error', () => resolve(false));
        }),
      10_000,
    );
  };
  const down = async (signal: NodeJS.Signals) => {
    const c = child;
    if (!c || c.exitCode !== null || c.signalCode !== null) return;
    const exited = new Promise((r) => c.once('exit', r));
    c.kill(signal);
    await exited;
  };
  await up();
  return { url: `redis://127.0.0.1:${port}`, kill9: () => down('SIGKILL'), restart: up, stop: () => down('SIGTERM') };
}
