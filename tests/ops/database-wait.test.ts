import { spawn } from 'node:child_process';
import net from 'node:net';
import path from 'node:path';
import { Writable } from 'node:stream';
import pino from 'pino';
import { waitForDatabase } from '../../src/db-wait';
import { TEST_PG_URL } from '../helpers/db';

jest.setTimeout(240_000);

const BIN = path.join(__dirname, '..', '..', 'bin', 'pyre.js');

/** A loopback port with nothing listening on it. */
async function closedPort(): Promise<number> {
  const srv = net.createServer();
  await new Promise<void>((r) => srv.listen(0, '127.0.0.1', () => r()));
  const port = (srv.address() as net.AddressInfo).port;
  await new Promise<void>((r) => srv.close(() => r()));
  return port;
}

/** A logger whose lines the test reads. */
function recordingLogger() {
  const lines: string[] = [];
  const logger = pino(
    { level: 'info' },
    new Writable({
      write(chunk, _enc, cb) {
        lines.push(JSON.parse(String(chunk)).msg);
        cb();
      },
    }),
  );
  return { logger, lines };
}

describe('a DATABASE_URL that does not work', () => {
  test('`pyre start` says what is wrong in one line and exits 69 once the wait is over', async () => {
    const port = await closedPort();
    const r = await new Promise<{ code: number | null; stderr: string }>((resolve) => {
      const child = spawn(process.execPath, [BIN, 'start'], {
        env: {
          PATH: process.env.PATH ?? '',
          HOME: process.env.HOME ?? '/tmp',
          PORT: '0',
          LOG_LEVEL: 'silent',
          DATABASE_URL: `postgres://pyre:secret@127.0.0.1:${port}/pyre`,
          DATABASE_WAIT_SECONDS: '1',
        },
        stdio: ['ignore', 'ignore', 'pipe'],
      });
      let stderr = '';
      child.stderr.on('data', (d) => (stderr += d));
      child.on('close', (code) => resolve({ code, stderr }));
    });
    expect(r.code).toBe(69);
    expect(r.stderr).toBe(
      `pyre: cannot start: the database server at pyre@127.0.0.1:${port}/pyre refused the connection (not running yet?) ` +
        '(gave up after 1 s; DATABASE_WAIT_SECONDS)\n',
    );
    expect(r.stderr).not.toContain('secret');
  });

  test('a server that comes up while pyre waits is used', async () => {
    const port = await closedPort();
    const { logger, lines } = recordingLogger();
    // Until the "database" listens, connections are refused; then a real one answers (PostgreSQL
    // when the suite has one, else a server that speaks just enough: it is the wait being tested).
    const target = TEST_PG_URL ? new URL(TEST_PG_URL) : null;
    const url = target
      ? `postgres://${target.username}@127.0.0.1:${port}${target.pathname}`
      : `postgres://x@127.0.0.1:${port}/x`;
    const waiting = waitForDatabase(url, logger, 60);
    for (let i = 0; i < 600 && !lines.some((l) => /^waiting for the database/.test(l)); i++)
      await new Promise((r) => setTimeout(r, 50));
    expect(lines[0]).toMatch(/^waiting for the database: the database server at .* refused the connection/);
    const proxy = net.createServer((c) => {
      if (!target) return c.destroy();
      const up = net.connect(Number(target.port || 5432), target.hostname);
      c.pipe(up).pipe(c);
      up.on('error', () => c.destroy());
      c.on('error', () => up.destroy());
    });
    await new Promise<void>((r) => proxy.listen(port, '127.0.0.1', () => r()));
    try {
      const problem = await waiting;
      if (target) expect(problem).toBeNull();
      else expect(problem).toMatchObject({ transient: false }); // connected, then cut: not a refusal any more
    } finally {
      await new Promise<void>((r) => proxy.close(() => r()));
    }
  });

  (TEST_PG_URL ? test : test.skip)('a missing database is named at once, without waiting', async () => {
    const u = new URL(TEST_PG_URL!);
    u.pathname = '/pyre_no_such_database';
    const { logger } = recordingLogger();
    const problem = await waitForDatabase(u.href, logger, 60);
    expect(problem).toEqual({
      message:
        `the database "pyre_no_such_database" does not exist on ${u.username}@${u.hostname}:${u.port}/pyre_no_such_database ` +
        '(create it, or fix DATABASE_URL)',
      transient: false,
    });
  });
});
