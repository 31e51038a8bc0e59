/**
 * The transports every RealtimeServer starts with: WebSocket, and long-poll unless
 * `longpoll: false`. They register through `RealtimeServer.register` as any other transport
 * would; this file is the only place that names them.
 */
import type { TransportHost } from './host';
import { LongPollEndpoint, type LongPollOptions } from './longpoll';
import type { TransportEndpoint } from './transport';
import { WebSocketEndpoint } from './websocket';

/** The built-in transports' options (part of `RealtimeServerOptions`). */
export interface BuiltInTransportOptions {
  /**
   * Slow-client cap on a socket's unsent bytes (default 4 MiB). Over it for longer than
   * `slowClientGraceMs` (default 2000), or over 4× it at once ⇒ terminated and counted.
   */
  maxBufferedBytes?: number;
  slowClientGraceMs?: number;
  /**
   * Unsent bytes allowed across all WebSockets together (default 128 MiB; 0: none). Over it, the
   * sockets holding the most are terminated first (counted as slow clients) until the rest fits.
   */
  maxTotalBufferedBytes?: number;
  /**
   * While the server is saturated (a flush pass took 2 ms or more), delay the next flush by up
   * to this many ms so that broadcasts close together share one write per socket (default 10;
   * 0 writes at the end of every tick).
   */
  maxFlushDelayMs?: number;
  /** The long-poll transport's options, or false for none. */
  longpoll?: LongPollOptions | false;
}

export function builtInTransports(host: TransportHost, opts: BuiltInTransportOptions): TransportEndpoint[] {
  const endpoints: TransportEndpoint[] = [
    new WebSocketEndpoint(host, {
      maxBufferedBytes: opts.maxBufferedBytes ?? 4 * 1024 * 1024,
      slowClientGraceMs: opts.slowClientGraceMs ?? 2000,
      maxFlushDelayMs: opts.maxFlushDelayMs ?? 10,
      maxTotalBufferedBytes: opts.maxTotalBufferedBytes ?? 128 * 1024 * 1024,
    }),
  ];
  if (opts.longpoll !== false) endpoints.push(new LongPollEndpoint(host, opts.longpoll ?? {}));
  return endpoints;
}
