/**
 * The long-poll messages between nodes: one discriminated union, and the one decoder every
 * message from the bus goes through. A message that does not decode is dropped (the caller logs
 * it); nothing here throws.
 *
 * Forwarding (a node that took a request for another node's session):
 *   poll / post  →  ack (the owner holds it)  →  res (the answer), or
 *                →  gone (no such session) / redirect (it moved to `node`: send it there);
 *   cancel (the client left: release the held poll); requeue (an answer came too late: its messages go back).
 * Handover (a node that stops):
 *   leaving (to every node: this one stops, hand it nothing); who → here (live nodes); adopt (a
 *   session, to one of them) → adopted, or refused (that node is stopping too); moved (to every node:
 *   where it went).
 */
import type { BusMessage } from '../bus';
import type { InboundMessage } from '../message';
import type { Params } from '../params';
import { ID } from './tokens';

/** The JSON body of every long-poll answer. */
export interface LpBody {
  status: number;
  token?: string;
  messages?: string[];
}

/** A client frame to handle again on the new node; `quiet` joins answer only if refused (their client had the reply). */
export interface HandedFrame {
  msg: InboundMessage;
  quiet: boolean;
}

/**
 * A session as its node hands it to another: the connection as `connect` made it (never the
 * request it was made from: no headers, no credentials), the frames to replay there (its
 * channels' joins, then what was not handled yet) and the messages not delivered yet.
 */
export interface HandedSession {
  /** The connect params (vsn included). */
  params: Params;
  assigns: Record<string, unknown>;
  id: string | null;
  expiresAt: number | null;
  frames: HandedFrame[];
  queue: string[];
}

export type LongPollMessage =
  | { t: 'poll'; rid: string; sid: string }
  | { t: 'post'; rid: string; sid: string; ctype: string | null; body: string }
  | { t: 'ack'; rid: string }
  | { t: 'res'; rid: string; sid: string; body: LpBody }
  | { t: 'gone'; rid: string }
  | { t: 'redirect'; rid: string; sid: string; node: string }
  | { t: 'cancel'; rid: string }
  | { t: 'requeue'; sid: string; messages: string[] }
  | { t: 'who'; rid: string }
  | { t: 'here'; rid: string }
  | { t: 'moved'; sid: string; node: string }
  | { t: 'adopt'; sid: string; session: HandedSession }
  | { t: 'adopted'; sid: string }
  | { t: 'refused'; sid: string }
  | { t: 'leaving' };

/** A forwarded request as first sent (sent again with the same rid when the session moved). */
export type ForwardedRequest =
  Omit<Extract<LongPollMessage, { t: 'poll' }>, 'rid'> | Omit<Extract<LongPollMessage, { t: 'post' }>, 'rid'>;

type Check = (v: unknown) => boolean;
const id: Check = (v) => typeof v === 'string' && ID.test(v);
const str: Check = (v) => typeof v === 'string';
const strOrNull: Check = (v) => v === null || typeof v === 'string';
const strings: Check = (v) => Array.isArray(v) && v.every((x) => typeof x === 'string');
const isObject = (v: unknown): v is Record<string, unknown> => v !== null && typeof v === 'object' && !Array.isArray(v);
const ref: Check = (v) => v === null || typeof v === 'string' || (typeof v === 'number' && Number.isFinite(v));

const body: Check = (v) =>
  isObject(v) &&
  typeof v.status === 'number' &&
  (v.token === undefined || typeof v.token === 'string') &&
  (v.messages === undefined || strings(v.messages));

const frame: Check = (v) =>
  isObject(v) &&
  typeof v.quiet === 'boolean' &&
  isObject(v.msg) &&
  ref(v.msg.joinRef) &&
  ref(v.msg.ref) &&
  typeof v.msg.topic === 'string' &&
  typeof v.msg.event === 'string' &&
  'payload' in v.msg;

const session: Check = (v) =>
  isObject(v) &&
  isObject(v.params) &&
  isObject(v.assigns) &&
  strOrNull(v.id) &&
  (v.expiresAt === null || (typeof v.expiresAt === 'number' && Number.isFinite(v.expiresAt))) &&
  Array.isArray(v.frames) &&
  v.frames.every(frame) &&
  strings(v.queue);

/** The fields each kind must have, and their checks (extra fields are ignored). */
const SHAPES: { [K in LongPollMessage['t']]: Record<Exclude<keyof Extract<LongPollMessage, { t: K }>, 't'>, Check> } = {
  poll: { rid: id, sid: id },
  post: { rid: id, sid: id, ctype: strOrNull, body: str },
  ack: { rid: id },
  res: { rid: id, sid: id, body },
  gone: { rid: id },
  redirect: { rid: id, sid: id, node: id },
  cancel: { rid: id },
  requeue: { sid: id, messages: strings },
  who: { rid: id },
  here: { rid: id },
  moved: { sid: id, node: id },
  adopt: { sid: id, session },
  adopted: { sid: id },
  refused: { sid: id },
  leaving: {},
};

/** A bus message as a long-poll message, or the reason it is not one. */
export function decodeMessage(raw: unknown): LongPollMessage | { problem: string } {
  if (!isObject(raw)) return { problem: 'not an object' };
  const t = raw.t;
  if (typeof t !== 'string' || !Object.hasOwn(SHAPES, t)) return { problem: `unknown kind ${JSON.stringify(t)}` };
  const shape = SHAPES[t as LongPollMessage['t']] as Record<string, Check>;
  for (const [field, ok] of Object.entries(shape)) {
    if (!ok(raw[field])) return { problem: `${t}: field ${field} missing or malformed` };
  }
  return raw as unknown as LongPollMessage;
}

/** A long-poll message as the bus carries it. */
export function encodeMessage(m: LongPollMessage): BusMessage {
  return m as unknown as BusMessage;
}

/** The kinds the handover part handles; the rest are forwarding's. */
const HANDOVER_KINDS = ['who', 'here', 'moved', 'adopt', 'adopted', 'refused', 'leaving'] as const;
export type HandoverMessage = Extract<LongPollMessage, { t: (typeof HANDOVER_KINDS)[number] }>;
export type ForwardingMessage = Exclude<LongPollMessage, HandoverMessage>;

export function isHandoverMessage(m: LongPollMessage): m is HandoverMessage {
  return (HANDOVER_KINDS as readonly string[]).includes(m.t);
}
