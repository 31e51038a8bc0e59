import { spawn } from 'node:child_process';
import path from 'node:path';
import { ProgressLine } from '../../src/cli/progress';
import { startDemoGateway, type DemoGateway } from '../dashboard/helpers';

const BIN = path.join(__dirname, '..', '..', 'bin', 'pyre.js');

/**
 * `pyre ...args` in a pseudo-terminal (util-linux `script`), stdout and stderr both on it as in
 * an interactive shell. Resolves to the exact bytes the terminal received.
 */
function pyreInTerminal(args: string[], env: Record<string, string>, timeoutMs = 45_000): Promise<string> {
  const quote = (s: string) => `'${s.replace(/'/g, `'\\''`)}'`;
  const command = [process.execPath, BIN, ...args].map(quote).join(' ');
  return new Promise((resolve, reject) => {
    const child = spawn('script', ['-q', '-e', '-c', command, '/dev/null'], {
      env: { PATH: process.env.PATH ?? '', HOME: process.env.HOME ?? '/tmp', TERM: 'xterm', ...env },
      stdio: ['pipe', 'pipe', 'pipe'],
    });
    let out = '';
    child.stdout.on('data', (d) => (out += d));
    const timer = setTimeout(() => {
      child.kill('SIGKILL');
      reject(new Error(`pyre ${args.join(' ')} did not exit within ${timeoutMs} ms; terminal: ${JSON.stringify(out)}`));
    }, timeoutMs);
    child.on('error', reject);
    child.on('close', () => {
      clearTimeout(timer);
      resolve(out);
    });
  });
}

/**
 * The lines a terminal shows after those bytes: enough of a VT100 for what the CLI writes
 * (printable text, CR, LF, erase-line `ESC[2K`; other escape sequences are skipped).
 */
export function screen(bytes: string): string[] {
  const lines: string[] = [''];
  let row = 0;
  let col = 0;
  for (let i = 0; i < bytes.length; i++) {
    const c = bytes[i]!;
    if (c === '\r') col = 0;
    else if (c === '\n') {
      row++;
      if (lines.length <= row) lines.push('');
    } else if (c === '\x1b') {
      // eslint-disable-next-line no-control-regex -- an escape sequence is what is parsed here
      const m = /^\x1b\[([0-9;?]*)([A-Za-z])/.exec(bytes.slice(i));
      if (!m) continue;
      if (m[2] === 'K' && m[1] === '2') lines[row] = '';
      i += m[0].length - 1;
    } else {
      const line = lines[row]!.padEnd(col);
      lines[row] = line.slice(0, col) + c + line.slice(col + 1);
      col++;
    }
  }
  return lines;
}

describe('pyre in a terminal', () => {
  let env: DemoGateway;
  let userEnv: Record<string, string>;

  beforeAll(async () => {
    env = await startDemoGateway({ auth: true });
    userEnv = { PYRE_URL: env.url, PYRE_TOKEN: env.token('tess') };
  });

  afterAll(async () => {
    await env?.close();
  });

  test('the screen model follows carriage returns and erase-line', () => {
    expect(screen('abc\r\x1b[2Kxy\r\nz')).toEqual(['xy', 'z']);
  });

  test('submit --type text leaves every line of the answer on the screen, the last one too', async () => {
    const bytes = await pyreInTerminal(['submit', '--type', 'text', 'Say hello'], userEnv);
    const [task] = (await env.gw.tasks.list('tess', { limit: 1 })).data;
    expect(task!.status).toBe('succeeded');
    const text = (task!.output as { text: string }).text;
    const shown = screen(bytes).map((l) => l.trimEnd());
    const want = text
      .trimEnd()
      .split('\n')
      .map((l) => l.trimEnd());
    // The answer's lines appear in order on the screen, the last line included.
    const start = shown.indexOf(want[0]!);
    expect(start).toBeGreaterThanOrEqual(0);
    expect(shown.slice(start, start + want.length)).toEqual(want);
  });
});

describe('the progress line on a terminal', () => {
  /** A stream that records what a terminal would receive. */
  function fakeTerminal(): { out: NodeJS.WriteStream; bytes: () => string } {
    let bytes = '';
    const out = { isTTY: true, write: (s: string) => ((bytes += s), true) } as unknown as NodeJS.WriteStream;
    return { out, bytes: () => bytes };
  }

  test('a video at 100 % still processing says it is finishing (storing the output), then succeeded', () => {
    const t = fakeTerminal();
    const bar = new ProgressLine(t.out, 'bytedance/seedance-1-pro', true);
    bar.update('processing', 99);
    expect(screen(t.bytes()).at(-1)).toMatch(/ 99% {2}processing /);
    bar.update(undefined, 100);
    expect(screen(t.bytes()).at(-1)).toMatch(
      /100% {2}finishing \(storing the output\) [\d.]+s {2}bytedance\/seedance-1-pro$/,
    );
    bar.update('succeeded', 100);
    bar.done();
    expect(screen(t.bytes()).at(-2)).toMatch(/100% {2}succeeded /);
  });

  test('"reconnecting…" replaces the status while the connection is down, and goes when it is back', () => {
    const t = fakeTerminal();
    const bar = new ProgressLine(t.out, 'm', true);
    bar.update('processing', 40);
    bar.connection(false);
    expect(screen(t.bytes()).at(-1)).toMatch(/ 40% {2}reconnecting… /);
    bar.connection(true);
    expect(screen(t.bytes()).at(-1)).toMatch(/ 40% {2}processing /);
    bar.done();
  });

  test('piped (no terminal): one line for each, no carriage returns', () => {
    let text = '';
    const out = { isTTY: false, write: (s: string) => ((text += s), true) } as unknown as NodeJS.WriteStream;
    const bar = new ProgressLine(out, 'm', false);
    bar.update('processing', 90);
    bar.update(undefined, 100);
    bar.connection(false);
    bar.connection(true);
    bar.update('succeeded', 100);
    bar.done();
    expect(text).toBe(
      'processing 90%\nprogress 100%\nfinishing (storing the output)\nreconnecting…\nreconnected\nsucceeded 100%\n',
    );
  });
});
