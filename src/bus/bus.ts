/**
 * The cluster bus: what the gateway processes sharing one database tell each other. One
 * interface, three engines (PostgreSQL LISTEN/NOTIFY, Redis Pub/Sub, in memory for several
 * gateways in one process). The database stays the source of truth: the bus may lose messages
 * (a connection drops, the broker restarts), and whoever relies on it repairs from the database
 * in its `onReconnect` hook and on a timer (the relay's position check).
 *
 * Named after Centrifuge's broker: topics carry messages to every other node (`publish`) or to
 * one (`send`); what one node sends arrives at each other node in the order it was sent,
 * whatever the topic; a node never hears its own messages.
 */

/** What the gateway puts on the bus, each with its own handler. */
export const BUS_TOPICS = ['events', 'new_work', 'realtime', 'longpoll'] as const;
/**
 * `events`: committed task events (refs, read from the database); `new_work`: wakes the
 * runners; `realtime`: the realtime layer's broadcasts and presence; `longpoll`: long-poll
 * requests forwarded to the process holding the session, and its handovers.
 */
export type BusTopic = (typeof BUS_TOPICS)[number];

export type BusEngine = 'postgres' | 'redis' | 'memory';

/** A message's handler: the message (JSON-safe, decoded) and the id of the node that sent it. */
export type BusHandler = (message: unknown, from: string) => void;

/** What readiness reports: the engine, whether this node hears the others, and each topic's state. */
export interface BusStatus {
  engine: BusEngine;
  /** Whether the connection that receives is up (every topic rides on it). */
  connected: boolean;
  /** Each topic with a handler here: 'ok', or 'reconnecting' while the connection is down. */
  channels: Partial<Record<BusTopic, 'ok' | 'reconnecting'>>;
}

export interface Bus {
  readonly engine: BusEngine;
  /** This node's id (letters, digits): what other nodes pass to `send`. */
  readonly nodeId: string;
  /** Registers the single handler of `topic` on this node (before or after `start`). */
  subscribe(topic: BusTopic, handler: BusHandler): void;
  /** To every other node. JSON-safe messages of any size; never throws; may be lost. */
  publish(topic: BusTopic, message: unknown): void;
  /** To node `node` only (nothing happens if it is gone). Same order and loss rules as `publish`. */
  send(node: string, topic: BusTopic, message: unknown): void;
  /**
   * Runs `hook` each time this node starts hearing the others again, the first connection
   * included: messages sent while it was deaf are never delivered, so the hook re-reads what
   * may have been missed.
   */
  onReconnect(hook: () => void): void;
  status(): BusStatus;
  /** Connects (waits a while for the first connection, then goes on reconnecting in the background). */
  start(): Promise<void>;
  /** Sends what is queued, then disconnects. */
  close(): Promise<void>;
}
