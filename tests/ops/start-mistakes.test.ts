import { spawn } from 'node:child_process';
import fs from 'node:fs';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { lockEmbeddedDir } from '../../src/db';
import { resolveLogFormat } from '../../src/log';
import { explainStartupError } from '../../src/startup';
import { seedDataDir } from '../helpers/db';
import { pyre } from '../cli/helpers';

// eslint-disable-next-line @typescript-eslint/no-require-imports -- the start script is plain CommonJS
const { needsBuild } = require('../../scripts/start.cjs') as { needsBuild(root: string): boolean };

jest.setTimeout(120_000); // `pyre start` compiles the sources with tsx first: slow on a busy machine

/** Issue 23, item 3: the mistakes a user can fix end a start in one line, before any migration. */
describe('start-up mistakes: one line, exit 69 or 78, nothing done first', () => {
  let dataDir: string;
  beforeEach(() => {
    dataDir = fs.mkdtempSync(path.join(os.tmpdir(), 'pyre-start-'));
  });
  afterEach(() => fs.rmSync(dataDir, { recursive: true, force: true }));

  test('a port in use: one line naming the port and PORT, exit 69, no migration, no demo stand-in', async () => {
    const holder = net.createServer();
    await new Promise<void>((r) => holder.listen(0, '127.0.0.1', () => r()));
    const port = (holder.address() as net.AddressInfo).port;
    try {
      const r = await pyre(['start'], { PORT: String(port), DATA_DIR: dataDir });
      expect(r.stderr).toBe(
        `pyre: cannot start: port ${port} on 127.0.0.1 is in use by another program (another pyre?): stop it, or set PORT to a free port\n`,
      );
      expect(r.code).toBe(69);
      expect(r.stdout).toBe(''); // no OPEN MODE / DEMO MODE / "database migrated" line
      expect(fs.existsSync(path.join(dataDir, 'pglite'))).toBe(false);
    } finally {
      holder.close();
    }
  });

  test('a DATA_DIR held by another live pyre: its message alone (no stack), exit 69, before migrations', async () => {
    const release = lockEmbeddedDir(path.join(dataDir, 'pglite'));
    try {
      const r = await pyre(['start'], { PORT: '0', DATA_DIR: dataDir });
      expect(r.stderr).toMatch(
        new RegExp(
          `^pyre: cannot start: the embedded database .* is in use by another pyre process \\(pid ${process.pid}\\): .*DATA_DIR.*\\n$`,
        ),
      );
      expect(r.stderr.split('\n')).toHaveLength(2); // one line
      expect(r.code).toBe(69);
      expect(r.stdout).not.toMatch(/database migrated/);
      expect(fs.existsSync(path.join(dataDir, 'pglite'))).toBe(false);
    } finally {
      release();
    }
  });

  test('the errors a user can fix are named; anything else is left for its stack', () => {
    const config = { host: '127.0.0.1', port: 4000, dataDir: '/srv/pyre' };
    const err = (code: string, extra: Record<string, unknown> = {}) =>
      Object.assign(new Error(code), { code, ...extra });
    expect(explainStartupError(err('EADDRINUSE', { syscall: 'listen' }), config)).toMatchObject({ exitCode: 69 });
    expect(explainStartupError(err('EADDRNOTAVAIL', { syscall: 'listen' }), config)?.message).toMatch(/^HOST 127/);
    expect(explainStartupError(err('EACCES', { syscall: 'listen' }), config)?.message).toMatch(/PORT to 1024/);
    expect(explainStartupError(err('EACCES', { syscall: 'mkdir', path: '/srv/pyre' }), config)).toEqual({
      message: 'cannot write to /srv/pyre (EACCES): DATA_DIR (/srv/pyre) must be a writable directory',
      exitCode: 78,
    });
    expect(explainStartupError(new TypeError('x is undefined'), config)).toBeNull();
  });

  test('a DATA_DIR that is a file: one line naming DATA_DIR, exit 78', async () => {
    const file = path.join(dataDir, 'not-a-dir');
    fs.writeFileSync(file, '');
    const r = await pyre(['start'], { PORT: '0', DATA_DIR: file });
    expect(r.stderr).toMatch(
      /^pyre: cannot start: cannot write to .*not-a-dir.* \(E\w+\): DATA_DIR .* must be a writable directory\n$/,
    );
    expect(r.code).toBe(78);
  });
});

/** Issue 23, item 4: LOG_FORMAT. */
describe('log format', () => {
  test('auto: readable lines on a terminal, JSON elsewhere; a set format wins', () => {
    expect(resolveLogFormat('auto', { isTTY: true })).toBe('pretty');
    expect(resolveLogFormat('auto', { isTTY: false })).toBe('json');
    expect(resolveLogFormat('auto', {})).toBe('json');
    expect(resolveLogFormat('json', { isTTY: true })).toBe('json');
    expect(resolveLogFormat('pretty', { isTTY: false })).toBe('pretty');
  });

  test('on a terminal the start-up lines are readable, the OPEN and DEMO MODE warnings among them; LOG_FORMAT=json keeps JSON there', async () => {
    const dataDir = fs.mkdtempSync(path.join(os.tmpdir(), 'pyre-tty-'));
    seedDataDir(dataDir); // the log's format is tested here, not a first start: no initdb
    const bin = path.join(__dirname, '..', '..', 'bin', 'pyre.js');
    // `script` gives the command a pseudo-terminal, as a user's shell does.
    const underTty = (env: Record<string, string>) =>
      new Promise<string>((resolve, reject) => {
        // The gateway in the background of a shell on the terminal, so its pid is known and it gets the SIGTERM.
        const command = `${process.execPath} ${bin} start & echo "gateway=$!"; wait`;
        const child = spawn('script', ['-qfec', command, '/dev/null'], {
          env: { PATH: process.env.PATH ?? '', HOME: process.env.HOME ?? '/tmp', PORT: '0', DATA_DIR: dataDir, ...env },
          stdio: ['pipe', 'pipe', 'pipe'],
        });
        let out = '';
        let stopped = false;
        child.stdout.on('data', (d) => {
          out += d;
          const pid = /gateway=(\d+)/.exec(out)?.[1];
          if (!stopped && pid && /listening/.test(out)) {
            stopped = true;
            process.kill(Number(pid), 'SIGTERM');
          }
        });
        child.on('error', reject);
        child.on('close', () => resolve(out));
      });
    try {
      const readable = await underTty({});
      const lines = readable.split(/\r?\n/).filter((l) => l.trim() !== '');
      expect(lines.some((l) => l.trim().startsWith('{'))).toBe(false);
      expect(readable).toMatch(/WARN.*OPEN MODE: AUTH_SECRET is unset/);
      expect(readable).toMatch(/WARN.*DEMO MODE: REPLICATE_API_TOKEN is unset/);
      expect(readable).toMatch(/INFO.*pyre listening on http:\/\/127\.0\.0\.1:\d+/);
      const json = await underTty({ LOG_FORMAT: 'json' });
      expect(json).toMatch(/^\{"level":\d+,.*"msg":"pyre listening on /m);
    } finally {
      fs.rmSync(dataDir, { recursive: true, force: true });
    }
  });

  test('LOG_FORMAT is validated with the other settings', async () => {
    const r = await pyre(['start'], { LOG_FORMAT: 'xml' });
    expect(r.code).toBe(78);
    expect(r.stderr).toMatch(/LOG_FORMAT: .*"auto"\|"pretty"\|"json"|LOG_FORMAT: .*auto.*pretty.*json/);
  });
});

/** Issue 23, item 5: `npm start` compiles only when a source changed. */
describe('npm start builds only when sources changed', () => {
  test('no build, a build older than a source, a deleted source: build; an up-to-date build: none', () => {
    const root = fs.mkdtempSync(path.join(os.tmpdir(), 'pyre-build-'));
    try {
      const at = (p: string, secondsAgo: number) => {
        const t = new Date(Date.now() - secondsAgo * 1000);
        fs.utimesSync(path.join(root, p), t, t);
      };
      fs.mkdirSync(path.join(root, 'src', 'cli'), { recursive: true });
      fs.writeFileSync(path.join(root, 'src', 'cli', 'main.ts'), '');
      fs.writeFileSync(path.join(root, 'src', 'old.ts'), '');
      fs.writeFileSync(path.join(root, 'package.json'), '{}');
      for (const p of ['src/cli/main.ts', 'src/old.ts', 'src/cli', 'src', 'package.json']) at(p, 100);
      expect(needsBuild(root)).toBe(true); // never built (a fresh clone)
      fs.mkdirSync(path.join(root, 'dist', 'src'), { recursive: true });
      fs.writeFileSync(path.join(root, 'dist', 'src', 'main.js'), '');
      at('dist/src/main.js', 50);
      expect(needsBuild(root)).toBe(false); // built after every source: start at once
      at('src/cli/main.ts', 10);
      expect(needsBuild(root)).toBe(true); // an edit
      at('src/cli/main.ts', 100);
      expect(needsBuild(root)).toBe(false);
      fs.rmSync(path.join(root, 'src', 'old.ts')); // a deletion changes its directory
      expect(needsBuild(root)).toBe(true);
    } finally {
      fs.rmSync(root, { recursive: true, force: true });
    }
  });

  test('package.json runs the start script, which builds on its own terms', () => {
    const pkg = JSON.parse(fs.readFileSync(path.join(__dirname, '..', '..', 'package.json'), 'utf8'));
    expect(pkg.scripts.start).toBe('node scripts/start.cjs');
  });
});
