/**
 * A real HAProxy (Debian's package) in front of gateway processes, for tests in the deployment
 * shape: round-robin, no stickiness, HTTP and WebSocket. The config is written into a temp dir
 * and the process is started and stopped by the test.
 */
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import fs from 'node:fs';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { freePort } from './net';

export interface HaproxyBackend {
  /** Server name in the config (letters, digits, `_`). */
  name: string;
  host?: string;
  port: number;
}

export interface HaproxyOptions {
  backends: HaproxyBackend[];
  /** Default `/healthz`: servers failing it are taken out of the rotation. `null`: no checks. */
  healthPath?: string | null;
  /** Health check interval (default 300 ms) and failures before a server is out (default 2). */
  checkIntervalMs?: number;
  fall?: number;
  /** HAProxy's maxconn (default 4000; each connection takes two file descriptors). */
  maxconn?: number;
  /** The frontend's bind address (default `127.0.0.1:<port>`; docs/haproxy.cfg binds `:80`). */
  bind?: string;
}

export interface Haproxy {
  /** `http://127.0.0.1:<port>` of the balancer. */
  url: string;
  port: number;
  /** The config file HAProxy runs with (also shows in a failing test's output). */
  configPath: string;
  config: string;
  /** Points server `name` at another address (a restarted process), through the runtime API. */
  setServer(name: string, port: number, host?: string): Promise<void>;
  /** Sends one command to the runtime API (`show stat`, `disable server be/s1`, ...). */
  command(cmd: string): Promise<string>;
  close(): Promise<void>;
}

/** True when the HAProxy binary is installed (`apt-get install haproxy`). */
export function haproxyAvailable(): boolean {
  return spawnSync(haproxyBinary(), ['-v'], { stdio: 'ignore' }).status === 0;
}

function haproxyBinary(): string {
  return fs.existsSync('/usr/sbin/haproxy') ? '/usr/sbin/haproxy' : 'haproxy';
}

/** The config: round-robin over every backend, no cookie or source stickiness, WebSocket upgrades pass. */
export function haproxyConfig(port: number, socketPath: string, opts: HaproxyOptions): string {
  const health = opts.healthPath === undefined ? '/healthz' : opts.healthPath;
  const check = health === null ? '' : ` check inter ${opts.checkIntervalMs ?? 300} fall ${opts.fall ?? 2} rise 1`;
  return [
    'global',
    `  stats socket ${socketPath} mode 600 level admin`,
    `  maxconn ${opts.maxconn ?? 4000}`,
    'defaults',
    '  mode http',
    '  timeout connect 2s',
    '  timeout client 60s',
    '  timeout server 60s',
    '  timeout tunnel 1h',
    // A dead process refuses the check's connection at once (out after `fall` × `inter`); a busy
    // one gets longer than `inter` (the default check timeout) to answer before it counts as failed.
    '  timeout check 3s',
    // A connection refused by a dead server is retried on another one.
    '  retries 3',
    '  option redispatch',
    'frontend pyre',
    `  bind ${opts.bind ?? `127.0.0.1:${port}`}`,
    '  default_backend gateways',
    'backend gateways',
    '  balance roundrobin',
    // A request sent on a kept-alive connection that a stopping gateway closed at that moment
    // gets no answer: a GET (a long-poll poll included) is sent again to another server.
    // A POST is not (it may have been handled).
    '  retry-on conn-failure empty-response',
    '  http-request disable-l7-retry if METH_POST',
    ...(health === null ? [] : [`  option httpchk GET ${health}`]),
    ...opts.backends.map((b) => `  server ${b.name} ${b.host ?? '127.0.0.1'}:${b.port}${check}`),
    '',
  ].join('\n');
}

export async function startHaproxy(opts: HaproxyOptions): Promise<Haproxy> {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'pyre-haproxy-'));
  const configPath = path.join(dir, 'haproxy.cfg');
  const socketPath = path.join(dir, 'admin.sock');
  const port = await freePort();
  const config = haproxyConfig(port, socketPath, opts);
  fs.writeFileSync(configPath, config);
  const check = spawnSync(haproxyBinary(), ['-c', '-f', configPath], { encoding: 'utf8' });
  if (check.status !== 0) throw new Error(`haproxy rejected its config:\n${check.stdout}${check.stderr}\n${config}`);
  // -db: stay in the foreground, so the test owns the process.
  const child: ChildProcess = spawn(haproxyBinary(), ['-db', '-f', configPath], { stdio: ['ignore', 'pipe', 'pipe'] });
  let output = '';
  child.stdout!.on('data', (d) => (output += d));
  child.stderr!.on('data', (d) => (output += d));
  const exited = new Promise<void>((r) => child.once('exit', () => r()));

  const command = (cmd: string): Promise<string> =>
    new Promise((resolve, reject) => {
      const s = net.connect(socketPath);
      let out = '';
      s.on('data', (d) => (out += d));
      s.on('end', () => resolve(out));
      s.on('error', reject);
      s.end(`${cmd}\n`);
    });

  // Ready when the frontend accepts connections.
  const deadline = Date.now() + 10_000;
  for (;;) {
    const ok = await new Promise<boolean>((r) => {
      const s = net.connect(port, '127.0.0.1');
      s.once('connect', () => {
        s.destroy();
        r(true);
      });
      s.once('error', () => r(false));
    });
    if (ok) break;
    if (child.exitCode !== null || Date.now() > deadline) {
      child.kill('SIGKILL');
      throw new Error(`haproxy did not start:\n${output}`);
    }
    await new Promise((r) => setTimeout(r, 50));
  }

  return {
    url: `http://127.0.0.1:${port}`,
    port,
    configPath,
    config,
    command,
    async setServer(name, serverPort, host = '127.0.0.1') {
      const out = await command(`set server gateways/${name} addr ${host} port ${serverPort}`);
      if (/no such|error|unknown/i.test(out)) throw new Error(`haproxy: ${out}`);
      await command(`set server gateways/${name} state ready`);
    },
    async close() {
      if (child.exitCode === null && child.signalCode === null) child.kill('SIGTERM');
      const t = setTimeout(() => child.kill('SIGKILL'), 5000);
      await exited;
      clearTimeout(t);
      fs.rmSync(dir, { recursive: true, force: true });
    },
  };
}
