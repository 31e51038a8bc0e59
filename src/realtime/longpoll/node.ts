/** What the parts of long-poll (forwarding, handover) share of the endpoint: this node, its sessions, the bus. */
import type { LongPollMessage } from './messages';
import type { LongPollSession, SessionOwner } from './session';
import type { SessionTokens } from './tokens';

export interface LongPollNode extends SessionOwner {
  /** This node's id on the bus (the first part of the tokens it makes). */
  readonly nodeId: string;
  readonly tokens: SessionTokens;
  /** A session with no request for this long is stopped. */
  readonly sessionTimeoutMs: number;
  /** How long a node waits for another's first sign of life. */
  readonly busTimeoutMs: number;
  /** The live session `sid` held here, if any. */
  session(sid: string): LongPollSession | undefined;
  /** The live sessions held here. */
  sessions(): LongPollSession[];
  /** A new session `sid` held here from now on (its connection is the caller's to open). */
  openSession(sid: string): LongPollSession;
  /** Sends to one node (this one included: handled on a later turn, in order). */
  sendTo(node: string, message: LongPollMessage): void;
  /** Sends to every other node. */
  sendAll(message: LongPollMessage): void;
}

/** Where sessions went that were handed over (by any node): the handover part keeps it, forwarding reads it. */
export interface MoveBook {
  whereMoved(sid: string): string | undefined;
  learnMoved(sid: string, node: string): void;
}
