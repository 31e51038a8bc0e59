/**
 * The long-poll transport, in parts: `endpoint.ts` (HTTP, and the TransportEndpoint the server
 * registers), `session.ts` (one client), `tokens.ts` (signed session tokens), `messages.ts`
 * (the bus messages and their decoder), `forwarding.ts` (requests for another node's session)
 * and `handover.ts` (sessions moved to a live node when this one stops).
 */
export { LongPollEndpoint, type LongPollOptions } from './endpoint';
