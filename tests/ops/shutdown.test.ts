import { spawn, type ChildProcess } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import readline from 'node:readline';
import { seedDataDir } from '../helpers/db';

const BIN = path.join(__dirname, '..', '..', 'bin', 'pyre.js');

jest.setTimeout(240_000); // `pyre start` compiles the sources with tsx first: slow on a busy machine

interface Started {
  child: ChildProcess;
  url: string;
  logs: Array<Record<string, any>>;
  exited: Promise<{ code: number | null; signal: NodeJS.Signals | null }>;
  dataDir: string;
}

/** `pyre start` as a user runs it: demo mode, embedded database, JSON logs on stdout. */
async function startPyre(): Promise<Started> {
  const dataDir = fs.mkdtempSync(path.join(os.tmpdir(), 'pyre-stop-'));
  seedDataDir(dataDir); // a stop is tested here, not a first start: no initdb
  const child = spawn(process.execPath, [BIN, 'start'], {
    env: { PATH: process.env.PATH ?? '', HOME: process.env.HOME ?? '/tmp', PORT: '0', DATA_DIR: dataDir },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  const logs: Array<Record<string, any>> = [];
  const exited = new Promise<{ code: number | null; signal: NodeJS.Signals | null }>((r) =>
    child.once('exit', (code, signal) => r({ code, signal })),
  );
  let stderr = '';
  child.stderr!.on('data', (d) => (stderr += d));
  const url = await new Promise<string>((resolve, reject) => {
    readline.createInterface({ input: child.stdout! }).on('line', (line) => {
      try {
        const o = JSON.parse(line);
        logs.push(o);
        if (typeof o.url === 'string' && /listening/.test(o.msg)) resolve(o.url);
      } catch {
        /* not a log line */
      }
    });
    void exited.then(({ code }) => reject(new Error(`pyre start exited (${code}): ${stderr}`)));
  });
  return { child, url, logs, exited, dataDir };
}

async function waitFor<T>(what: string, f: () => Promise<T | undefined> | T | undefined, ms = 60_000): Promise<T> {
  const deadline = Date.now() + ms;
  for (;;) {
    const v = await f();
    if (v !== undefined) return v;
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 50));
  }
}

/** A video task (minutes long in demo mode) that the runner has started. */
async function runningVideo(url: string): Promise<string> {
  const res = await fetch(`${url}/api/tasks`, {
    method: 'POST',
    headers: { 'content-type': 'application/json' },
    body: JSON.stringify({ input_data: { type: 'video', prompt: 'a long one' } }),
  });
  const { task_id } = (await res.json()) as { task_id: string };
  await waitFor('the task to run', async () => {
    const t = (await (await fetch(`${url}/api/tasks/${task_id}`)).json()) as any;
    return t.data.status === 'processing' ? true : undefined;
  });
  return task_id;
}

describe('stopping pyre', () => {
  test('SIGTERM with a task running: the log says what was released, and ends with "stopped"', async () => {
    const p = await startPyre();
    try {
      await runningVideo(p.url);
      p.child.kill('SIGTERM');
      const { code } = await p.exited;
      expect(code).toBe(0);
      const start = p.logs.find((l) => /^shutting down/.test(l.msg));
      expect(start).toMatchObject({ signal: 'SIGTERM', tasks_running: 1 });
      const last = p.logs[p.logs.length - 1]!;
      expect(last.msg).toMatch(/^stopped: 1 task\(s\) released to resume later/);
      expect(last).toMatchObject({ tasks_released: 1, tasks_finished: 0 });
    } finally {
      p.child.kill('SIGKILL');
      fs.rmSync(p.dataDir, { recursive: true, force: true });
    }
  });

  test('a second signal stops at once, saying so', async () => {
    const p = await startPyre();
    try {
      await runningVideo(p.url);
      p.child.kill('SIGTERM');
      await waitFor('shutting down', () => (p.logs.some((l) => /^shutting down/.test(l.msg)) ? true : undefined));
      p.child.kill('SIGINT');
      const { code } = await p.exited;
      expect(code).toBe(130);
      expect(p.logs.some((l) => /^second signal: stopping now/.test(l.msg))).toBe(true);
      expect(p.logs.some((l) => /^stopped/.test(l.msg))).toBe(false);
    } finally {
      p.child.kill('SIGKILL');
      fs.rmSync(p.dataDir, { recursive: true, force: true });
    }
  });
});
