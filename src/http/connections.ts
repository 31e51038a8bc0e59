import http from 'node:http';
import type { Socket } from 'node:net';
import type { Config } from '../config';
import type { Logger } from '../log';
import { RateLimitedLogger } from '../realtime';

/**
 * The HTTP server, with deliberate limits on idle and slow connections (Node's defaults let a
 * connection that sends nothing live 60 to 90 s, and a request take 5 minutes):
 * - headers must be in within headersTimeoutMs of the connection opening (or of the previous
 *   request on a keep-alive connection), the whole request within requestTimeoutMs; otherwise
 *   Node answers 408 and closes. Node checks every connectionsCheckingInterval (a tenth of the
 *   headers timeout, at most 1 s), so a connection that never sends a byte is closed within
 *   headersTimeoutMs + 1 s.
 * - an idle keep-alive connection is closed after keepAliveTimeoutMs.
 */
export function createHttpServer(limits: Config['connections']): http.Server {
  return http.createServer({
    headersTimeout: limits.headersTimeoutMs,
    requestTimeout: limits.requestTimeoutMs,
    keepAliveTimeout: limits.keepAliveTimeoutMs,
    connectionsCheckingInterval: checkingIntervalMs(limits.headersTimeoutMs),
  });
}

/** How often Node looks for connections past their header or request deadline. */
export function checkingIntervalMs(headersTimeoutMs: number): number {
  // The check walks only connections still in HTTP (not WebSockets): cheap enough every second.
  return Math.min(1000, Math.max(25, Math.floor(headersTimeoutMs / 10)));
}

/**
 * At most `max` open TCP connections per remote address (HTTP, long-poll and WebSocket alike):
 * one host cannot hold all of the process's file descriptors. A connection over the cap is
 * answered 503 and closed at once. 0: no cap (behind a proxy every client has the proxy's address).
 */
export function limitConnectionsPerAddress(server: http.Server, max: number, logger: Logger): void {
  if (max <= 0) return;
  const open = new Map<string, number>();
  // One host can try thousands of connections a second: a few lines say so.
  const log = new RateLimitedLogger(logger, { lines: 5, intervalMs: 10_000 });
  server.on('connection', (socket: Socket) => {
    const address = socket.remoteAddress ?? 'unknown';
    const n = open.get(address) ?? 0;
    if (n >= max) {
      log.warn({ address, max }, 'connection refused: too many open connections from this address');
      socket.on('error', () => {});
      socket.end(
        'HTTP/1.1 503 Service Unavailable\r\nConnection: close\r\nRetry-After: 5\r\nContent-Length: 0\r\n\r\n',
      );
      socket.destroySoon?.();
      return;
    }
    open.set(address, n + 1);
    socket.once('close', () => {
      const left = (open.get(address) ?? 1) - 1;
      if (left === 0) open.delete(address);
      else open.set(address, left);
    });
  });
}
