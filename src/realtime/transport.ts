/**
 * What the transports and the transport-neutral core share: the per-connection `Transport` a
 * Connection writes to, and the `TransportEndpoint` each transport registers with the server
 * through `RealtimeServer.register` (Phoenix.Socket.Transport's role). The set is open: a
 * transport declares its own kind, the server routes to endpoints by kind and never names one.
 */
import type { IncomingMessage, ServerResponse } from 'node:http';
import type { Duplex } from 'node:stream';
import type { Fanout } from './pubsub';
import type { EncodedFrame, Serializer } from './serializer';

/**
 * A transport's name, declared by the transport itself (the built-in ones: `'websocket'`,
 * `'longpoll'`): `connect`'s `info.transport`, and its path under the mount (`/socket/<kind>`).
 * Lower-case letters, digits, `_` and `-`, starting with a letter.
 */
export type TransportKind = string;

/** What a transport kind must look like (it is one path segment). */
export const TRANSPORT_KIND = /^[a-z][a-z0-9_-]{0,31}$/;

/** How a connection writes: implemented by each transport's per-client object. */
export interface Transport {
  readonly kind: TransportKind;
  write(frame: EncodedFrame): void;
  writeFanout(f: Fanout, serializer: Serializer): void;
  /** Starts closing; the transport calls `connection.transportClosed()` once it is gone. */
  close(code: number, reason: string): void;
  /** Drops the client now, without a close handshake (server shutdown). */
  terminate(): void;
}

/** Close codes used by the server (never 1000: phoenix.js would not reconnect). */
export const CloseCode = {
  goingAway: 1001,
  protocolError: 1002,
  policyViolation: 1008,
  tooBig: 1009,
  serverError: 1011,
  serviceRestart: 1012,
} as const;

/**
 * One transport's figures in `stats().transports[kind]`: `connections` (its live connections,
 * counted by the server) and the gauges the transport reports itself (long-poll: `sessions`).
 */
export interface TransportCounts {
  connections: number;
  [gauge: string]: number;
}

/** One transport as the server sees it: registered once, routed to by its kind. */
export interface TransportEndpoint {
  readonly kind: TransportKind;
  /** A plain HTTP request for `${path}/${kind}`. */
  handleHttp(req: IncomingMessage, res: ServerResponse): void;
  /** An upgrade request for `${path}/${kind}`; absent: this transport takes no upgrades (left to other listeners). */
  handleUpgrade?(req: IncomingMessage, socket: Duplex, head: Buffer): void;
  /** How often the server's sweep must run for this transport's own deadlines (ms), if it has any. */
  readonly sweepIntervalMs?: number;
  /** Called when the server drains, before its connections are closed (long-poll hands its sessions over). */
  drain?(): Promise<void>;
  /** Stops serving and ends this transport's own work, before the server terminates the remaining connections. */
  close(): Promise<void>;
  /** This transport's own gauges for `stats().transports[kind]` (besides `connections`, which the server counts). */
  counts?(): Record<string, number>;
}

/** Refuses an upgrade with a bare HTTP answer (nobody will speak WebSocket on this socket). */
export function rejectUpgrade(socket: Duplex, status: number): void {
  const text: Record<number, string> = {
    400: 'Bad Request',
    403: 'Forbidden',
    404: 'Not Found',
    429: 'Too Many Requests',
    503: 'Service Unavailable',
  };
  try {
    socket.end(`HTTP/1.1 ${status} ${text[status] ?? 'Error'}\r\nConnection: close\r\nContent-Length: 0\r\n\r\n`);
  } catch {
    socket.destroy();
  }
}
