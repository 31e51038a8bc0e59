/**
 * Idle and slow connections are closed, and one address cannot hold more than its share.
 * The timeouts are configured short here so the suite is quick; the defaults are in the README.
 */
import net from 'node:net';
import { ConfigError, loadConfig } from '../../src/config';
import { startGateway, type TestGateway } from '../helpers/gateway';
import { waitFor } from '../helpers/wait';

interface Probe {
  socket: net.Socket;
  /** What the server sent before closing (Node answers a late request 408). */
  received: string;
  /** ms from opening until the server closed it; undefined while open. */
  closedAfterMs?: number;
}

function open(port: number): Probe {
  const started = Date.now();
  const socket = net.connect(port, '127.0.0.1');
  const p: Probe = { socket, received: '' };
  socket.setEncoding('latin1');
  socket.on('data', (d: string) => (p.received += d));
  socket.on('error', () => {});
  socket.on('close', () => (p.closedAfterMs = Date.now() - started));
  return p;
}

const portOf = (url: string) => Number(new URL(url).port);

/** A plain request on a fresh connection: the status line. */
async function statusLine(port: number): Promise<string> {
  const p = open(port);
  p.socket.write('GET /healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n');
  await waitFor('the answer', () => p.closedAfterMs !== undefined, 10_000);
  return p.received.split('\r\n', 1)[0]!;
}

describe('idle and slow connections', () => {
  let t: TestGateway;
  beforeAll(async () => {
    t = await startGateway('pglite', {
      env: { HTTP_HEADERS_TIMEOUT_MS: '500', HTTP_REQUEST_TIMEOUT_MS: '1000', HTTP_KEEP_ALIVE_TIMEOUT_MS: '500' },
    });
  });
  afterAll(() => t.close());

  it('300 TCP connections that send nothing are all closed (408); the server keeps answering meanwhile', async () => {
    const port = portOf(t.url);
    const probes = Array.from({ length: 300 }, () => open(port));
    await waitFor(
      'condition',
      () => probes.every((p) => p.socket.readyState === 'open' || p.closedAfterMs !== undefined),
      10_000,
    );
    expect(await statusLine(port)).toBe('HTTP/1.1 200 OK');
    // Node's own default would keep them 60 to 90 s; the deadline here is far below that.
    await waitFor('every idle connection closed', () => probes.every((p) => p.closedAfterMs !== undefined), 30_000);
    for (const p of probes) expect(p.received === '' || p.received.startsWith('HTTP/1.1 408')).toBe(true);
    const times = probes.map((p) => p.closedAfterMs!).sort((a, b) => a - b);
    process.stdout.write(
      `300 idle connections, headers timeout 500 ms (checked every 50 ms): closed after ${times[0]}–${times[299]} ms (median ${times[150]})\n`,
    );
  });

  it('headers sent a byte at a time (slowloris) are cut off at the headers timeout', async () => {
    const p = open(portOf(t.url));
    const request = 'GET /healthz HTTP/1.1\r\nHost: x\r\nX-Slow: ' + 'a'.repeat(1000);
    let i = 0;
    const drip = setInterval(() => {
      if (p.closedAfterMs === undefined && i < request.length) p.socket.write(request[i++]!);
    }, 20);
    try {
      await waitFor('the slow connection closed', () => p.closedAfterMs !== undefined, 30_000);
    } finally {
      clearInterval(drip);
    }
    expect(p.received).toMatch(/^HTTP\/1\.1 408/);
    expect(i).toBeLessThan(request.length);
  });

  it('an idle keep-alive connection is closed after its request', async () => {
    const p = open(portOf(t.url));
    p.socket.write('GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n');
    await waitFor('the keep-alive connection closed', () => p.closedAfterMs !== undefined, 30_000);
    expect(p.received).toMatch(/^HTTP\/1\.1 200/);
  });
});

describe('connections per remote address', () => {
  let t: TestGateway;
  beforeAll(async () => {
    t = await startGateway('pglite', { env: { MAX_CONNECTIONS_PER_ADDRESS: '5' } });
  });
  afterAll(() => t.close());

  it('past the cap a connection gets 503 and is closed; a freed slot is usable again', async () => {
    const port = portOf(t.url);
    const held = Array.from({ length: 5 }, () => open(port));
    await waitFor('five connections open', () => held.every((p) => p.socket.readyState === 'open'), 10_000);
    expect(await statusLine(port)).toBe('HTTP/1.1 503 Service Unavailable');
    expect(held.every((p) => p.closedAfterMs === undefined)).toBe(true);
    held[0]!.socket.destroy();
    await waitFor('a slot freed', async () => (await statusLine(port)) === 'HTTP/1.1 200 OK', 10_000);
    for (const p of held) p.socket.destroy();
  });
});

describe('connection settings', () => {
  it('have documented defaults and are validated', () => {
    const c = loadConfig({}).connections;
    expect(c).toEqual({
      headersTimeoutMs: 10_000,
      requestTimeoutMs: 30_000,
      keepAliveTimeoutMs: 5_000,
      upgradeTimeoutMs: 5_000,
      maxPerAddress: 1000,
      maxTotalBufferedBytes: 128 * 1024 * 1024,
    });
    expect(loadConfig({ MAX_CONNECTIONS_PER_ADDRESS: '0' }).connections.maxPerAddress).toBe(0);
    expect(() => loadConfig({ HTTP_HEADERS_TIMEOUT_MS: '20000', HTTP_REQUEST_TIMEOUT_MS: '10000' })).toThrow(
      /HTTP_HEADERS_TIMEOUT_MS: must not be more than HTTP_REQUEST_TIMEOUT_MS/,
    );
    expect(() => loadConfig({ WS_UPGRADE_TIMEOUT_MS: 'soon' })).toThrow(ConfigError);
    expect(() => loadConfig({ HTTP_HEADERS_TIMEOUT_MS: '5' })).toThrow(/HTTP_HEADERS_TIMEOUT_MS: must be at least 100/);
  });
});
