import { spawn } from 'node:child_process';
import net from 'node:net';
import path from 'node:path';
import fs from 'node:fs';
import os from 'node:os';
import { lockEmbeddedDir } from '../../src/db';
import { seedDataDir } from '../helpers/db';
import { startDemoGateway, type DemoGateway } from '../dashboard/helpers';
import { pyre, pyreIn } from './helpers';

/** A loopback port with nothing listening on it. */
async function closedPort(): Promise<number> {
  const srv = net.createServer();
  await new Promise<void>((r) => srv.listen(0, '127.0.0.1', () => r()));
  const port = (srv.address() as net.AddressInfo).port;
  await new Promise<void>((r) => srv.close(() => r()));
  return port;
}

describe('pyre command against a running gateway', () => {
  let env: DemoGateway;
  let userEnv: Record<string, string>;

  beforeAll(async () => {
    env = await startDemoGateway({ auth: true });
    userEnv = { PYRE_URL: env.url, PYRE_TOKEN: env.token('carol') };
  });

  afterAll(async () => {
    await env?.close();
  });

  test('submit follows an image task to the end: progress on stderr, the URL on stdout, exit 0', async () => {
    const r = await pyreIn(
      ['submit', '--type', 'image', '--param', 'aspect_ratio=16:9', 'a', 'lighthouse', 'at', 'dusk'],
      userEnv,
    );
    expect(r.stderr).toMatch(/^task [0-9a-f-]{36} \(google\/imagen-4-fast\) queued$/m);
    expect(r.code).toBe(0);
    const urls = r.stdout.trim().split('\n');
    expect(urls).toHaveLength(1);
    expect(urls[0]).toMatch(new RegExp(`^${env.url}/files/[0-9a-f-]{36}/`));
    // Progress was shown as it moved (not a terminal: one line per change), then the end.
    const percents = [...r.stderr.matchAll(/^progress (\d+)%$/gm)].map((m) => Number(m[1]));
    expect(percents.filter((p) => p > 0 && p < 100).length).toBeGreaterThanOrEqual(2);
    expect([...percents].sort((a, b) => a - b)).toEqual(percents);
    expect(r.stderr).toMatch(/^processing/m);
    expect(r.stderr).toMatch(/^succeeded 100%$/m);
    // The URL is the stored file, and the task is what was asked.
    const img = await fetch(urls[0]!);
    expect(img.status).toBe(200);
    expect(img.headers.get('content-type')).toMatch(/^image\//);
    const taskId = /^task ([0-9a-f-]{36})/m.exec(r.stderr)![1]!;
    const task = await env.gw.tasks.get('carol', taskId);
    expect(task).toMatchObject({
      status: 'succeeded',
      input_data: { aspect_ratio: '16:9', prompt: 'a lighthouse at dusk' },
    });
  });

  test('submit streams a text task to stdout and prints exactly the final text', async () => {
    const r = await pyreIn(['submit', '--type', 'text', '--quiet', 'Say hello'], userEnv);
    expect(r.code).toBe(0);
    expect(r.stderr).toBe('');
    const [task] = (await env.gw.tasks.list('carol', { limit: 1 })).data;
    expect(task!.status).toBe('succeeded');
    const text = (task!.output as { text: string }).text;
    expect(text.length).toBeGreaterThan(10);
    expect(r.stdout).toBe(text.endsWith('\n') ? text : `${text}\n`);
  });

  test("tasks lists the caller's tasks; --json gives the API answer", async () => {
    const table = await pyreIn(['tasks'], userEnv);
    expect(table.code).toBe(0);
    const lines = table.stdout.trim().split('\n');
    expect(lines[0]).toMatch(/^ID\s+STATUS\s+PROG\s+MODEL\s+AGE\s+PROMPT$/);
    expect(lines.slice(1)).toHaveLength(2);
    expect(lines[1]).toMatch(/^[0-9a-f-]{36}\s+succeeded\s+100%\s+gpt-4\.1\s+\d+s\s+Say hello$/);
    const json = await pyreIn(['tasks', '--json', '--status', 'succeeded', '--limit', '1'], userEnv);
    expect(json.code).toBe(0);
    const page = JSON.parse(json.stdout);
    expect(page.data).toHaveLength(1);
    expect(page.next_cursor).toEqual(expect.any(String));
    // Paging: the first page names the command for the next one, which lists the older task.
    const first = await pyreIn(['tasks', '--limit', '1'], userEnv);
    const hint = /\(older tasks: npx pyre tasks --cursor (\S+) --limit 1\)/.exec(first.stderr);
    expect(hint).not.toBeNull();
    const second = await pyreIn(['tasks', '--limit', '1', '--cursor', hint![1]!], userEnv);
    expect(second.code).toBe(0);
    const idOf = (line: string | undefined) => line?.split(/\s+/)[0];
    expect(idOf(second.stdout.trim().split('\n')[1])).toBe(idOf(lines[2]));
    expect(second.stderr).toBe('');
    // Another user sees none of carol's tasks.
    const other = await pyreIn(['tasks'], { ...userEnv, PYRE_TOKEN: env.token('dave') });
    expect(other).toMatchObject({ code: 0, stdout: '', stderr: 'no tasks\n' });
  });

  test('a bad model, a bad parameter and a bad type exit 2 with the field message; no task is made', async () => {
    const before = (await env.gw.tasks.list('carol', { limit: 200 })).data.length;
    const [model, param, type, noParamValue] = await Promise.all([
      pyreIn(['submit', '--type', 'image', '--model', 'acme/nope', 'a cat'], userEnv),
      pyreIn(['submit', '--type', 'video', '--param', 'duration=99', 'a cat'], userEnv),
      pyreIn(['submit', '--type', 'image', '--model', 'gpt-4.1', 'a cat'], userEnv),
      pyreIn(['submit', '--type', 'image', '--param', 'aspect_ratio', 'a cat'], userEnv),
    ]);
    expect(model).toMatchObject({ code: 2, stdout: '' });
    expect(model.stderr).toBe('pyre: model: is not a known model (see `npx pyre models`)\n');
    expect(param).toMatchObject({ code: 2, stderr: 'pyre: duration: must be at most 12\n' });
    expect(type).toMatchObject({ code: 2, stderr: 'pyre: model: is not supported for image_gen\n' });
    expect(noParamValue).toMatchObject({ code: 2, stderr: 'pyre: --param "aspect_ratio": expected name=value\n' });
    expect((await env.gw.tasks.list('carol', { limit: 200 })).data.length).toBe(before);
  });

  test('a reader that closes the pipe early (| head -c 30): a quiet exit, the hint on stderr, the task keeps running', async () => {
    const r = await pyre(['submit', '--type', 'text', 'Say hello at length'], userEnv, 45_000, {
      closeStdoutOnData: true,
    });
    expect(r.stderr).not.toMatch(/node:events|Unhandled|EPIPE|\n\s+at /);
    expect(r.code).toBe(0);
    const id = /^task ([0-9a-f-]{36})/m.exec(r.stderr)![1]!;
    expect(r.stderr).toContain(
      `pyre: standard output was closed; task ${id} keeps running (follow it again with \`npx pyre watch ${id}\`)`,
    );
    const task = await env.gw.tasks.get('carol', id);
    expect(task.status === 'processing' || task.status === 'succeeded').toBe(true);
    expect(task.cancel_requested).toBeFalsy();
  });

  test('--version prints the package version', async () => {
    const r = await pyreIn(['--version']);
    const pkg = JSON.parse(fs.readFileSync(path.join(__dirname, '..', '..', 'package.json'), 'utf8'));
    expect(r).toMatchObject({ code: 0, stdout: `${pkg.version}\n` });
  });

  test('submit without --type does what the API does (a text task); usage errors exit 2; refused credentials exit 77', async () => {
    const [noType, badType, badToken] = await Promise.all([
      pyreIn(['submit', '--detach', 'a cat'], userEnv),
      pyreIn(['submit', '--type', 'sound', 'a cat'], userEnv),
      pyreIn(['submit', '--type', 'image', 'a cat'], { ...userEnv, PYRE_TOKEN: 'pyre1.bad.token' }),
    ]);
    expect(noType.code).toBe(0);
    const noTypeTask = await env.gw.tasks.get('carol', noType.stdout.trim());
    expect(noTypeTask).toMatchObject({ task_type: 'text_gen', input_data: { type: 'text', prompt: 'a cat' } });
    expect(badType.code).toBe(2);
    expect(badType.stderr).toMatch(/Allowed choices are image, video, text/);
    expect(badToken.code).toBe(77);
    expect(badToken.stderr).toMatch(/^pyre: the gateway refused the credentials: unauthorized: token bad signature$/m);
    expect(badToken.stderr).toMatch(/not signed with this gateway's AUTH_SECRET/);
    const garbage = await pyreIn(['tasks'], { ...userEnv, PYRE_TOKEN: 'garbage' });
    expect(garbage.code).toBe(77);
    expect(garbage.stderr).toMatch(/token malformed\n.*not a pyre token/);
  });

  test('a gateway that is down: a clear message and exit 69', async () => {
    const port = await closedPort();
    const [down, tasks] = await Promise.all([
      pyreIn(['submit', '--type', 'image', '--url', `http://127.0.0.1:${port}`, 'a cat'], { PYRE_TOKEN: 'x' }),
      pyreIn(['tasks'], { PYRE_URL: `http://127.0.0.1:${port}` }),
    ]);
    for (const r of [down, tasks]) {
      expect(r.code).toBe(69);
      expect(r.stdout).toBe('');
      expect(r.stderr).toBe(
        `pyre: cannot reach the gateway at http://127.0.0.1:${port}: connection refused (is pyre running? set --url or PYRE_URL)\n`,
      );
    }
  });
});

describe('hints name the command as it can be run', () => {
  const bin = path.join(__dirname, '..', '..', 'bin', 'pyre.js');
  const hintOf = async (PATH: string) =>
    /to follow a task: (.*) watch <id>/.exec((await pyre(['tasks', '--watch'], { PATH })).stderr)?.[1];

  test('`pyre` when the pyre on the PATH is this one; `npx pyre` when none is, or another program is', async () => {
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'pyre-path-'));
    try {
      fs.mkdirSync(path.join(dir, 'linked'));
      fs.symlinkSync(bin, path.join(dir, 'linked', 'pyre')); // npm install -g / npm link
      fs.mkdirSync(path.join(dir, 'other'));
      fs.writeFileSync(path.join(dir, 'other', 'pyre'), '#!/bin/sh\n', { mode: 0o755 }); // another "pyre"
      const base = process.env.PATH ?? '';
      const [linked, none, other] = await Promise.all([
        hintOf(`${path.join(dir, 'linked')}${path.delimiter}${base}`),
        hintOf(base),
        hintOf(`${path.join(dir, 'other')}${path.delimiter}${base}`),
      ]);
      expect({ linked, none, other }).toEqual({ linked: 'pyre', none: 'npx pyre', other: 'npx pyre' });
    } finally {
      fs.rmSync(dir, { recursive: true, force: true });
    }
  });
});

describe('the embedded database belongs to one process', () => {
  test('a second process on the same DATA_DIR is refused with a clear message; a lock left by a dead process is taken over', async () => {
    const dataDir = fs.mkdtempSync(path.join(os.tmpdir(), 'pyre-lock-'));
    seedDataDir(dataDir); // the lock is tested here, not a first start: no initdb
    try {
      const release = lockEmbeddedDir(path.join(dataDir, 'pglite')); // held by this (live) process
      const refused = await pyre(['migrate'], { DATA_DIR: dataDir }, 150_000);
      release();
      expect(refused.code).toBe(69); // one line, as a start refused for the same reason
      expect(refused.stderr).toContain(`is in use by another pyre process (pid ${process.pid})`);
      expect(refused.stderr).not.toMatch(/RuntimeError|Aborted/);

      // A lock file naming a process that is gone (kill -9, a restarted container).
      const dead = spawn(process.execPath, ['-e', '0']);
      await new Promise((r) => dead.on('close', r));
      fs.writeFileSync(path.join(dataDir, 'pglite.lock'), String(dead.pid));
      // Without the run's template (seedDataDir) this runs initdb: minutes on a busy machine.
      const ok = await pyre(['migrate'], { DATA_DIR: dataDir }, 150_000);
      expect(ok.stderr).toBe('');
      expect(ok.stdout).toMatch(/applied|up to date/);
      expect(ok.code).toBe(0);
      expect(fs.existsSync(path.join(dataDir, 'pglite.lock'))).toBe(false);
    } finally {
      fs.rmSync(dataDir, { recursive: true, force: true });
    }
  }, 320_000);
});
