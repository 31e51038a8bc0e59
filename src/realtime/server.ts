/**
 * RealtimeServer: a Phoenix-channels endpoint for Node. Owns the routes, the connections, the
 * pubsub and the transports registered with it (each a TransportEndpoint, routed to by kind,
 * through `register`: the built-in ones from `builtin.ts`, and any other). It names none of them.
 */
import type { IncomingHttpHeaders, IncomingMessage, Server as HttpServer, ServerResponse } from 'node:http';
import type { Duplex } from 'node:stream';
import type { Assigns, Channel, ChannelSocket } from './channel';
import { Connection, type ConnectionContext, type RealtimeStats } from './connection';
import type { Payload } from './message';
import { type CheckOrigin, compileOriginCheck } from './origin';
import { decodeQuery, requestTarget, routePath, withoutToken, type Params } from './params';
import { PubSub, type PubSubAdapter, type Subscriber } from './pubsub';
import { negotiateSerializer } from './serializer';
import { RateLimitedLogger, silentRealtimeLogger, type LogLimit, type RealtimeLogger } from './logger';
import type { Authorized, HostedTransport, TransportHost } from './host';
import {
  CloseCode,
  rejectUpgrade,
  TRANSPORT_KIND,
  type TransportCounts,
  type TransportEndpoint,
  type TransportKind,
} from './transport';
import { builtInTransports, type BuiltInTransportOptions } from './builtin';

/** What `connect` sees besides the params. */
export interface ConnectInfo {
  transport: TransportKind;
  headers: IncomingHttpHeaders;
  remoteAddress: string | undefined;
  /** phoenix.js `authToken` (from `Sec-WebSocket-Protocol`), or `X-Phoenix-AuthToken` on long-poll. */
  authToken: string | null;
  uri: URL;
}

export type ConnectResult<A extends Assigns = Assigns> =
  | {
      assigns?: A;
      id?: string | null;
      /**
       * When the connection's credentials expire (ms since the epoch; null or absent: never). The
       * connection is closed then, WebSocket close 1008 "token expired", a long-poll session ends
       * (410): clients reconnect, and connect again with their current params.
       */
      expiresAt?: number | null;
      error?: undefined;
    }
  | { error: true; status?: number };

export interface RealtimeServerOptions<A extends Assigns = Assigns> extends BuiltInTransportOptions {
  /** Mount path (default `/socket`): serves `${path}/<kind>` for each transport (`websocket`, `longpoll`, any registered). */
  path?: string;
  /** Authenticates a connection. Default: accept everyone with empty assigns. Throwing ⇒ 403. */
  connect?: (params: Params, info: ConnectInfo) => ConnectResult<A> | Promise<ConnectResult<A>>;
  /** Phoenix check_origin: false, true (Origin host = request Host), 'conn', a list, or a predicate. Default true. */
  checkOrigin?: CheckOrigin;
  /** Largest inbound frame in bytes (default 64 KiB). Bigger ⇒ close 1009. */
  maxFrameBytes?: number;
  /** Inbound messages allowed per socket per interval (default 200 per 1000 ms); false disables. */
  rateLimit?: { messages: number; intervalMs: number } | false;
  /** Default 100, as Phoenix. */
  maxChannelsPerSocket?: number;
  /**
   * A WebSocket upgrade must be answered (101 or refused) within this long after its request
   * headers are in, `connect` included (default 5000 ms); past it the client gets 503 and the
   * connection is closed. Slow request headers are the HTTP server's headersTimeout's job.
   */
  upgradeTimeoutMs?: number;
  /** Close a WebSocket with no inbound frame for this long (default 60 000 ms; 0 disables). */
  idleTimeoutMs?: number;
  /** Malformed frames tolerated per socket before it is closed (default 10). */
  maxProtocolErrors?: number;
  /**
   * Deepest nesting of objects/arrays a client payload may have (default 32). A deeper one gets an
   * error reply and never reaches a channel, whose code may walk it recursively.
   */
  maxPayloadDepth?: number;
  logger?: RealtimeLogger;
  /**
   * Lines of one message written per window (default 20 per 10 000 ms); the rest are counted and
   * reported as `suppressed` on the next. Clients cause most of these lines. false: no limit.
   */
  logLimit?: LogLimit | false;
  /** Carries broadcasts between nodes (default: this process only). */
  pubsub?: PubSubAdapter;
}

/** Options of {@link RealtimeServer.drain}. */
export interface DrainOptions {
  batchSize?: number;
  intervalMs?: number;
}

interface Route {
  pattern: string;
  prefix: string | null;
  channel: Channel;
}

export class RealtimeServer<A extends Assigns = Assigns> implements ConnectionContext, TransportHost {
  readonly path: string;
  readonly pubsub: PubSub;
  readonly logger: RealtimeLogger;
  readonly counters: RealtimeStats = {
    sockets: 0,
    channels: 0,
    joins: 0,
    joinErrors: 0,
    messagesIn: 0,
    messagesOut: 0,
    protocolErrors: 0,
    rateLimited: 0,
    slowClientDisconnects: 0,
    idleDisconnects: 0,
    channelCrashes: 0,
    connectsRefused: 0,
  };
  readonly maxChannelsPerSocket: number;
  readonly rateLimit: { messages: number; intervalMs: number } | null;
  readonly maxProtocolErrors: number;
  readonly maxPayloadDepth: number;
  readonly idleTimeoutMs: number;
  readonly upgradeTimeoutMs: number;
  readonly maxFrameBytes: number;
  /** Every live connection, of every transport. */
  readonly connections = new Set<Connection>();

  private readonly routes: Route[] = [];
  private readonly exact = new Map<string, Channel>();
  private readonly connectFn: NonNullable<RealtimeServerOptions<A>['connect']>;
  private readonly originOk: ReturnType<typeof compileOriginCheck>;
  /** The transports, by kind (each serves `${path}/${kind}`). */
  private readonly transports = new Map<TransportKind, TransportEndpoint>();
  /** Live connections by transport kind. */
  private readonly connectionsByKind = new Map<TransportKind, number>();
  private sweepTimer: NodeJS.Timeout | null = null;
  private draining = false;
  private closedFlag = false;
  get isClosed(): boolean {
    return this.closedFlag;
  }
  get isDraining(): boolean {
    return this.draining || this.closedFlag;
  }
  private attached: { server: HttpServer; listener: (req: IncomingMessage, socket: Duplex, head: Buffer) => void }[] =
    [];

  constructor(opts: RealtimeServerOptions<A> = {}) {
    const mount = routePath(opts.path ?? '/socket');
    this.path = mount === '/' ? '' : mount;
    const logger = opts.logger ?? silentRealtimeLogger;
    this.logger =
      opts.logLimit === false
        ? logger
        : new RateLimitedLogger(logger, opts.logLimit ?? { lines: 20, intervalMs: 10_000 });
    this.connectFn = opts.connect ?? (() => ({ assigns: {} as A }));
    this.originOk = compileOriginCheck(opts.checkOrigin ?? true);
    this.maxFrameBytes = opts.maxFrameBytes ?? 64 * 1024;
    this.rateLimit = opts.rateLimit === false ? null : (opts.rateLimit ?? { messages: 200, intervalMs: 1000 });
    this.maxChannelsPerSocket = opts.maxChannelsPerSocket ?? 100;
    this.idleTimeoutMs = opts.idleTimeoutMs ?? 60_000;
    this.upgradeTimeoutMs = opts.upgradeTimeoutMs ?? 5000;
    this.maxProtocolErrors = opts.maxProtocolErrors ?? 10;
    this.maxPayloadDepth = opts.maxPayloadDepth ?? 32;
    this.pubsub = new PubSub(opts.pubsub, (err) =>
      this.logger.error({ err }, 'realtime: pubsub adapter publish failed'),
    );
    for (const endpoint of builtInTransports(this, opts)) this.register(endpoint);
  }

  /**
   * Adds a transport: it serves `${path}/${kind}` from now on, and takes part in `stats()`,
   * `drain()` and `close()`. The built-in ones come this way too. A transport reaches the server
   * through its TransportHost side (pass the server itself).
   */
  register(endpoint: TransportEndpoint): this {
    const { kind } = endpoint;
    if (this.closedFlag) throw new Error(`realtime: transport ${kind} registered after close`);
    if (!TRANSPORT_KIND.test(kind))
      throw new Error(`realtime: transport kind ${JSON.stringify(kind)} must match ${TRANSPORT_KIND.source}`);
    if (this.transports.has(kind)) throw new Error(`realtime: transport ${kind} registered twice`);
    this.transports.set(kind, endpoint);
    this.connectionsByKind.set(kind, 0);
    this.startSweep();
    return this;
  }

  /** The kinds of the registered transports, in registration order. */
  get transportKinds(): TransportKind[] {
    return [...this.transports.keys()];
  }

  // ---- routing ---------------------------------------------------------------------------

  /** Routes topics to a channel: `'room:*'` matches every topic starting with `room:`; otherwise exact. First match wins. */
  channel(pattern: string, impl: Channel<A>): this {
    const star = pattern.indexOf('*');
    if (star !== -1 && star !== pattern.length - 1)
      throw new Error(`channel pattern ${pattern}: '*' is only allowed at the end`);
    const route: Route = {
      pattern,
      prefix: star === -1 ? null : pattern.slice(0, -1),
      channel: impl as unknown as Channel,
    };
    this.routes.push(route);
    if (route.prefix === null && !this.exact.has(pattern)) this.exact.set(pattern, route.channel);
    return this;
  }

  route(topic: string): Channel | null {
    for (const r of this.routes) {
      if (r.prefix === null ? r.pattern === topic : topic.startsWith(r.prefix)) return r.channel;
    }
    return null;
  }

  // ---- broadcasting ----------------------------------------------------------------------

  /** Sends `event` to every subscriber of `topic` on every node. */
  broadcast(topic: string, event: string, payload: Payload): void {
    this.pubsub.broadcast(topic, event, payload, null);
  }

  /** Same as broadcast, except the channel `from` (a ChannelSocket handed to your channel). */
  broadcastFrom(from: ChannelSocket, topic: string, event: string, payload: Payload): void {
    this.pubsub.broadcast(topic, event, payload, from as unknown as Subscriber);
  }

  /**
   * Calls `fn` for every broadcast on `topic` (from this node or others) until the returned
   * function is called. For app code that is not a channel.
   */
  subscribe(topic: string, fn: (event: string, payload: Payload) => void): () => void {
    const sub: Subscriber = {
      deliver: (f) => {
        try {
          fn(f.message.event, f.message.payload);
        } catch (err) {
          this.logger.error({ err, topic }, 'realtime: subscriber threw');
        }
      },
    };
    this.pubsub.subscribe(topic, sub);
    return () => this.pubsub.unsubscribe(topic, sub);
  }

  /** Local-only variant (no adapter). */
  localBroadcast(topic: string, event: string, payload: Payload): void {
    this.pubsub.localBroadcast(topic, event, payload, null);
  }

  /** Closes every connection whose `connect` returned this id, on every node (close 1001; clients reconnect). */
  disconnect(socketId: string): void {
    this.pubsub.broadcast(socketId, 'disconnect', {}, null);
  }

  /**
   * Counters for metrics; `sockets`/`channels` are gauges, the rest only grow. `transports` has
   * each registered transport's figures by kind (its connections, and its own gauges).
   */
  stats(): RealtimeStats & { transports: Record<TransportKind, TransportCounts> } {
    const transports: Record<TransportKind, TransportCounts> = {};
    for (const [kind, t] of this.transports)
      transports[kind] = { ...t.counts?.(), connections: this.connectionsByKind.get(kind) ?? 0 };
    return { ...this.counters, transports };
  }

  // ---- connection lifecycle --------------------------------------------------------------

  /** Applies the checkOrigin option to a request. */
  originAllowed(req: IncomingMessage): boolean {
    const origin = req.headers.origin;
    const secure = Boolean((req.socket as { encrypted?: boolean }).encrypted);
    return this.originOk(typeof origin === 'string' ? origin : undefined, req.headers.host, secure);
  }

  /** Runs origin check, vsn negotiation and `connect`. Returns the connection ingredients or an HTTP status. */
  async authorize(
    req: IncomingMessage,
    transport: TransportKind,
    authToken: string | null,
    refuseAfterOrigin: { status: number; reason: string } | null = null,
    sessionToken: string | null = null,
  ): Promise<Authorized | { status: number }> {
    if (this.draining || this.closedFlag) return { status: 503 };
    const target = requestTarget(req);
    let uri: URL;
    try {
      uri = new URL(target, `http://${req.headers.host ?? 'localhost'}`);
    } catch {
      uri = new URL(target.replace(/^[^/]*/, ''), 'http://localhost');
    }
    if (!this.originAllowed(req)) {
      this.counters.connectsRefused++;
      this.logger.warn({ origin: req.headers.origin, transport }, 'realtime: origin not allowed');
      return { status: 403 };
    }
    if (refuseAfterOrigin !== null) {
      this.counters.connectsRefused++;
      this.logger.info({ transport, reason: refuseAfterOrigin.reason }, 'realtime: connection refused');
      return { status: refuseAfterOrigin.status };
    }
    // A long-poll request of a session that is gone carries that session's token in `token`
    // (phoenix.js appends it): it is no credential of the user, so `connect` does not see it.
    const search = sessionToken === null ? uri.search : withoutToken(uri.search, sessionToken);
    const connectUri = new URL(`${uri.origin}${uri.pathname}${search ? `?${search.replace(/^\?/, '')}` : ''}`);
    const params = decodeQuery(connectUri.search);
    const serializer = negotiateSerializer(params.vsn);
    if (serializer === null) {
      this.counters.connectsRefused++;
      this.logger.info({ vsn: params.vsn, transport }, 'realtime: unsupported vsn');
      return { status: 403 };
    }
    const { headers } = req;
    const info: ConnectInfo = {
      transport,
      headers,
      remoteAddress: req.socket.remoteAddress,
      authToken,
      uri: connectUri,
    };
    let result: ConnectResult<A>;
    try {
      result = await this.connectFn(params, info);
    } catch (err) {
      this.counters.connectsRefused++;
      this.logger.error({ err }, 'realtime: connect handler threw');
      return { status: 403 };
    }
    if (!result || result.error) {
      this.counters.connectsRefused++;
      return { status: (result && result.error && result.status) || 403 };
    }
    const id = result.id ?? null;
    if (id !== null && typeof id !== 'string') {
      this.counters.connectsRefused++;
      this.logger.error({ id }, 'realtime: connect returned a non-string id');
      return { status: 403 };
    }
    return { serializer, params, assigns: result.assigns ?? {}, id, expiresAt: result.expiresAt ?? null };
  }

  /** Creates and registers a connection. */
  openConnection(transport: HostedTransport, a: Authorized, idleTimeoutMs: number): Connection {
    const conn = new Connection(this, transport, a.serializer, a.params, a.assigns, a.id, idleTimeoutMs);
    transport.conn = conn;
    this.connections.add(conn);
    this.counters.sockets++;
    this.connectionsByKind.set(conn.transportKind, (this.connectionsByKind.get(conn.transportKind) ?? 0) + 1);
    if (a.expiresAt !== null) conn.expireAt(a.expiresAt);
    return conn;
  }

  connectionClosed(conn: Connection): void {
    if (!this.connections.delete(conn)) return;
    this.counters.sockets--;
    this.connectionsByKind.set(conn.transportKind, (this.connectionsByKind.get(conn.transportKind) ?? 1) - 1);
  }

  // ---- HTTP integration ------------------------------------------------------------------

  /** The transport a request target is for (`${path}/<kind>`), or undefined. */
  private transportFor(target: string): TransportEndpoint | undefined {
    const pathname = routePath(target);
    const prefix = `${this.path}/`;
    if (!pathname.startsWith(prefix)) return undefined;
    return this.transports.get(pathname.slice(prefix.length));
  }

  /** Handles upgrades for the transports that take them (`${path}/<kind>`) on `server`. Other upgrade paths are left alone. */
  attach(server: HttpServer): this {
    const listener = (req: IncomingMessage, socket: Duplex, head: Buffer): void => {
      const endpoint = this.transportFor(req.url ?? '');
      if (endpoint?.handleUpgrade === undefined) {
        // Nobody else will answer: do not leave the client hanging.
        if (server.listenerCount('upgrade') === 1) rejectUpgrade(socket, 404);
        return;
      }
      endpoint.handleUpgrade(req, socket, head);
    };
    server.on('upgrade', listener);
    this.attached.push({ server, listener });
    return this;
  }

  /**
   * Upgrades one request (for callers that route upgrades themselves): the transport of its path,
   * or else the first that takes upgrades (the WebSocket one).
   */
  handleUpgrade(req: IncomingMessage, socket: Duplex, head: Buffer): void {
    const endpoint = this.transportFor(req.url ?? '');
    const upgrading =
      endpoint?.handleUpgrade !== undefined ? endpoint : [...this.transports.values()].find((t) => t.handleUpgrade);
    if (upgrading?.handleUpgrade) upgrading.handleUpgrade(req, socket, head);
    else rejectUpgrade(socket, 404);
  }

  /**
   * Serves the transports' plain HTTP requests (`${path}/<kind>`: each transport answers its own).
   * Returns false when the request is not for this server, so it can sit in front of other handlers.
   */
  handleHttp(req: IncomingMessage, res: ServerResponse): boolean {
    const endpoint = this.transportFor(requestTarget(req));
    if (endpoint === undefined) return false;
    endpoint.handleHttp(req, res);
    return true;
  }

  /** Express/Connect middleware form of {@link handleHttp}. */
  middleware(): (req: IncomingMessage, res: ServerResponse, next: (err?: unknown) => void) => void {
    return (req, res, next) => {
      if (!this.handleHttp(req, res)) next();
    };
  }

  // ---- shutdown --------------------------------------------------------------------------

  /**
   * Stops accepting connections, then closes existing ones with 1012 in batches
   * (`batchSize` every `intervalMs`) so clients do not all reconnect to the next node at once.
   */
  async drain(opts: DrainOptions = {}): Promise<void> {
    const batchSize = Math.max(1, opts.batchSize ?? 1000);
    const intervalMs = opts.intervalMs ?? 100;
    this.draining = true;
    // Transports that can move their connections to another node do it now (their clients
    // notice nothing), or finish their own work.
    for (const t of this.transports.values()) await t.drain?.();
    const all = Array.from(this.connections);
    for (let i = 0; i < all.length; i += batchSize) {
      if (i > 0 && intervalMs > 0) await new Promise((r) => setTimeout(r, intervalMs));
      for (const conn of all.slice(i, i + batchSize)) conn.close(CloseCode.serviceRestart, 'server restart');
    }
  }

  /** Closes everything at once (tests, fatal shutdown) and the pubsub adapter. */
  async close(): Promise<void> {
    if (this.closedFlag) return;
    this.closedFlag = true;
    this.draining = true;
    if (this.sweepTimer) clearInterval(this.sweepTimer);
    this.sweepTimer = null;
    for (const { server, listener } of this.attached) server.removeListener('upgrade', listener);
    this.attached = [];
    for (const t of this.transports.values()) await t.close();
    for (const conn of Array.from(this.connections)) {
      conn.transport.terminate();
      conn.transportClosed('shutdown');
    }
    await this.pubsub.close();
  }

  // ---- idle sweep ------------------------------------------------------------------------

  /** (Re)starts the one sweep timer, as often as the idle limit and the transports need. */
  private startSweep(): void {
    if (this.sweepTimer) clearInterval(this.sweepTimer);
    this.sweepTimer = null;
    const idle = this.idleTimeoutMs;
    const own = Math.min(...[...this.transports.values()].map((t) => t.sweepIntervalMs ?? Infinity));
    const every = Math.min(idle > 0 ? Math.max(25, Math.min(5000, idle / 4)) : Infinity, own);
    if (!Number.isFinite(every)) return;
    this.sweepTimer = setInterval(() => this.sweep(), every);
    this.sweepTimer.unref();
  }

  /** One pass over all connections; a single timer for the whole server. */
  private sweep(): void {
    const now = Date.now();
    for (const conn of this.connections) {
      if (conn.idleTimeoutMs > 0 && now - conn.lastSeen > conn.idleTimeoutMs && !conn.isClosing) {
        this.counters.idleDisconnects++;
        this.logger.info({ socketId: conn.id, transport: conn.transportKind }, 'realtime: idle connection closed');
        // A dead peer never answers the close handshake; ws destroys the socket after its close timeout.
        conn.close(CloseCode.goingAway, 'idle timeout');
      }
    }
  }
}
