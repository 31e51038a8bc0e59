/**
 * The cluster bus: point-to-point messages between the nodes (processes) serving one endpoint.
 * Long-poll uses it to reach a session from any node, as Phoenix forwards long-poll requests
 * over its PubSub to the node that holds the session. The library only defines what it needs;
 * an application implements it over whatever its nodes share (pyre: PostgreSQL NOTIFY).
 */

/** A JSON-safe message (objects, arrays, strings, numbers, booleans, null). */
export type BusMessage = Record<string, unknown>;

export interface ClusterBus {
  /** This node's id: what the other nodes pass to `send` to reach it. Letters, digits, `_`, `-`. */
  readonly nodeId: string;
  /**
   * Sends `message` to node `to`, whole or not at all, in the order of `send` calls to the same
   * node. It may be lost (that node is gone, the bus is down); callers time out. Messages can be
   * as large as a long-poll POST body (`maxBodyBytes`, base64), so a bus with a size limit per
   * message must split and reassemble them. Never throws; failures are the bus's to log.
   * `to` may be `'*'`: every node but this one (a graceful stop asks who is up, and says where
   * its long-poll sessions went).
   */
  send(to: string, message: BusMessage): void;
  /** Registers the single handler for messages addressed to this node. */
  onMessage(handler: (message: BusMessage, from: string) => void): void;
}
