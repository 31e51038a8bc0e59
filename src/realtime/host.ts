/**
 * The one interface the transports (`websocket.ts`, `longpoll/`) see of the server that hosts
 * them. The server implements it; the transports import only this file, never `server.ts`, so
 * there is no import cycle.
 */
import type { IncomingMessage } from 'node:http';
import type { Assigns } from './channel';
import type { Connection, RealtimeStats } from './connection';
import type { RealtimeLogger } from './logger';
import type { Params } from './params';
import type { Serializer } from './serializer';
import type { Transport, TransportKind } from './transport';

/**
 * The ingredients of a Connection: a request that passed origin, vsn and `connect`, or a
 * long-poll session another node handed over (made of what `connect` returned there).
 */
export interface Authorized {
  serializer: Serializer;
  params: Params;
  assigns: Assigns;
  id: string | null;
  /** When the credentials expire (ms since the epoch), or null. */
  expiresAt: number | null;
}

/** A per-connection transport object: it learns its Connection once the host opens it. */
export interface HostedTransport extends Transport {
  conn: Connection;
}

export interface TransportHost {
  readonly logger: RealtimeLogger;
  readonly counters: RealtimeStats;
  /** Largest inbound frame in bytes. */
  readonly maxFrameBytes: number;
  /** Idle limit for WebSocket connections (ms, 0 = none). */
  readonly idleTimeoutMs: number;
  /** How long a WebSocket upgrade may take to be answered once its headers are in (ms). */
  readonly upgradeTimeoutMs: number;
  /** True once `close()` started: late upgrades are dropped. */
  readonly isClosed: boolean;
  /** True once `drain()` or `close()` started: this node takes no connection over from another. */
  readonly isDraining: boolean;
  /** Applies the checkOrigin option. */
  originAllowed(req: IncomingMessage): boolean;
  /**
   * Origin check, vsn negotiation and `connect`; an HTTP status when refused. `refuseAfterOrigin`
   * is an answer the transport already knows it will answer once the origin passed (Phoenix checks
   * the subprotocols between origin and connect). `sessionToken`: a `token` query value that is
   * the transport's own session token (long-poll), not a connect param: left out of the params.
   */
  authorize(
    req: IncomingMessage,
    transport: TransportKind,
    authToken: string | null,
    refuseAfterOrigin?: { status: number; reason: string } | null,
    sessionToken?: string | null,
  ): Promise<Authorized | { status: number }>;
  /** Creates and registers the Connection for a transport that is ready. */
  openConnection(transport: HostedTransport, a: Authorized, idleTimeoutMs: number): Connection;
}
