/**
 * What the transports and the transport-neutral core share: the transport kinds, the
 * per-connection `Transport` a Connection writes to, and the `TransportEndpoint` each transport
 * registers with the server (Phoenix.Socket.Transport's role). The server routes to endpoints by
 * kind and never names one.
 */
import type { IncomingMessage, ServerResponse } from 'node:http';
import type { Duplex } from 'node:stream';
import type { Fanout } from './pubsub';
import type { EncodedFrame, Serializer } from './serializer';

/** The transports' names: `connect`'s `info.transport`, and each one's path under the mount (`/socket/<kind>`). */
export type TransportKind = 'websocket' | 'longpoll';

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

/** Gauges the transports report in `stats()` beside the shared counters (0 for a transport that is off). */
export interface TransportGauges {
  /** Long-poll sessions held by this node. */
  longpollSessions: number;
}

export const NO_TRANSPORT_GAUGES: Readonly<TransportGauges> = Object.freeze({ longpollSessions: 0 });

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
  /** This transport's gauges for `stats()`. */
  gauges?(): Partial<TransportGauges>;
}
