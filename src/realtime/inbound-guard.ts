/**
 * A connection's limits on what its client sends: frames per window (the rate limit), malformed
 * frames, and payload depth. It counts and logs; the connection closes when told to.
 */
import type { RealtimeLogger } from './logger';
import { nestedDeeperThan, type InboundMessage, type OutboundMessage } from './message';
import { ProtocolError } from './serializer';

/** What the guard reads of the server (a part of the connection's context). */
export interface GuardContext {
  readonly logger: RealtimeLogger;
  readonly counters: { rateLimited: number; protocolErrors: number };
  readonly rateLimit: { messages: number; intervalMs: number } | null;
  readonly maxProtocolErrors: number;
  readonly maxPayloadDepth: number;
}

export class InboundGuard {
  private windowStart = 0;
  private inWindow = 0;
  private malformedFrames = 0;

  constructor(
    private readonly ctx: GuardContext,
    private readonly socketId: string | null,
  ) {}

  /** Counts one inbound frame; false once it goes over the rate limit (counted and logged: close the socket). */
  admit(now: number): boolean {
    const rl = this.ctx.rateLimit;
    if (rl === null) return true;
    if (now - this.windowStart >= rl.intervalMs) {
      this.windowStart = now;
      this.inWindow = 0;
    }
    if (++this.inWindow <= rl.messages) return true;
    this.ctx.counters.rateLimited++;
    this.ctx.logger.warn(
      { socketId: this.socketId, limit: rl.messages, intervalMs: rl.intervalMs },
      'realtime: inbound rate limit exceeded, closing socket',
    );
    return false;
  }

  /** A malformed frame, dropped: counted, the first 3 logged. True when there were too many (close the socket). */
  malformed(err: unknown, bytes: number): boolean {
    this.ctx.counters.protocolErrors++;
    const n = ++this.malformedFrames;
    if (n <= 3) {
      this.ctx.logger.warn(
        { socketId: this.socketId, bytes, err: err instanceof ProtocolError ? err.message : String(err) },
        'realtime: malformed frame dropped',
      );
    }
    if (n < this.ctx.maxProtocolErrors) return false;
    this.ctx.logger.warn(
      { socketId: this.socketId, protocolErrors: n },
      'realtime: too many malformed frames, closing socket',
    );
    return true;
  }

  /**
   * A payload nested deeper than maxPayloadDepth never reaches a channel (code that walks it
   * recursively would overflow its stack): the error reply naming the limit to send instead
   * (counted and logged), or null when the payload is fine. The socket stays up (the frame was
   * well formed).
   */
  tooDeep(msg: InboundMessage): OutboundMessage | null {
    const depth = this.ctx.maxPayloadDepth;
    if (!nestedDeeperThan(msg.payload, depth)) return null;
    this.ctx.counters.protocolErrors++;
    this.ctx.logger.warn(
      { socketId: this.socketId, topic: msg.topic, event: msg.event, maxPayloadDepth: depth },
      'realtime: payload nested too deeply, refused',
    );
    const response = { reason: `payload is nested more than ${depth} levels deep` };
    return { kind: 'reply', joinRef: msg.joinRef, ref: msg.ref, topic: msg.topic, status: 'error', response };
  }
}
