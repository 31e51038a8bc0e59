import { execFileSync, spawnSync } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { freePort } from './net';

/**
 * A PostgreSQL server of the test's own (initdb into a temp dir, pg_ctl on a free port), for
 * suites that stop and start the database: the shared server is never touched. The server
 * binaries come from PG_BIN_DIR, `pg_config --bindir`, or Debian's postgresql packages.
 * When the test runs as root, the server runs as the `postgres` user (it refuses root).
 */
export interface OwnPostgres {
  url: string;
  port: number;
  stop(): void;
  start(): void;
  /** Stop and delete everything. */
  destroy(): void;
}

function binDir(): string | undefined {
  const has = (dir: string) => fs.existsSync(path.join(dir, 'pg_ctl')) && fs.existsSync(path.join(dir, 'initdb'));
  if (process.env.PG_BIN_DIR && has(process.env.PG_BIN_DIR)) return process.env.PG_BIN_DIR;
  const cfg = spawnSync('pg_config', ['--bindir'], { encoding: 'utf8' });
  if (cfg.status === 0 && has(cfg.stdout.trim())) return cfg.stdout.trim();
  const debian = '/usr/lib/postgresql';
  if (fs.existsSync(debian)) {
    for (const v of fs.readdirSync(debian).sort((a, b) => Number(b) - Number(a))) {
      if (has(path.join(debian, v, 'bin'))) return path.join(debian, v, 'bin');
    }
  }
  return undefined;
}

const isRoot = () => process.getuid?.() === 0;

/** Why an own PostgreSQL cannot run here, or undefined when it can. */
export function ownPostgresUnavailable(): string | undefined {
  if (!binDir()) return 'PostgreSQL server binaries (initdb, pg_ctl) not found: set PG_BIN_DIR or install postgresql';
  if (isRoot() && spawnSync('id', ['postgres']).status !== 0) return 'running as root and there is no postgres user';
  return undefined;
}

export async function startOwnPostgres(): Promise<OwnPostgres> {
  const bin = binDir()!;
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'pyre-pg-'));
  const data = path.join(dir, 'data');
  const logFile = path.join(dir, 'server.log');
  if (isRoot()) execFileSync('chown', ['-R', 'postgres', dir]);
  const run = (cmd: string, args: string[]) => {
    const file = path.join(bin, cmd);
    if (isRoot()) execFileSync('runuser', ['-u', 'postgres', '--', file, ...args], { stdio: 'pipe', cwd: dir });
    else execFileSync(file, args, { stdio: 'pipe', cwd: dir });
  };
  run('initdb', ['-D', data, '-A', 'trust', '-U', 'postgres', '--no-sync', '-E', 'UTF8']);
  const port = await freePort();
  const opts = `-p ${port} -k ${dir} -c listen_addresses=127.0.0.1 -c fsync=off -c max_connections=200`;
  const start = () => run('pg_ctl', ['-D', data, '-o', opts, '-l', logFile, '-w', '-t', '60', 'start']);
  const stop = () => run('pg_ctl', ['-D', data, '-m', 'fast', '-w', '-t', '60', 'stop']);
  start();
  let running = true;
  return {
    url: `postgres://postgres@127.0.0.1:${port}/postgres`,
    port,
    start: () => {
      start();
      running = true;
    },
    stop: () => {
      stop();
      running = false;
    },
    destroy: () => {
      try {
        if (running) stop();
      } finally {
        fs.rmSync(dir, { recursive: true, force: true });
      }
    },
  };
}
