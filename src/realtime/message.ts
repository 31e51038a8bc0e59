/**
 * The three message shapes of the Phoenix wire protocol, independent of any serializer.
 * Mirrors Phoenix.Socket.Message / Reply / Broadcast (lib/phoenix/socket/message.ex).
 */

/**
 * A ref as the client sent it, echoed back unchanged: phoenix.js and Swift send decimal strings;
 * some other clients send JSON numbers (Phoenix echoes those as numbers too); null when absent.
 */
export type Ref = string | number | null;

/** A payload is any JSON value, or raw bytes for V2 binary frames. */
export type Payload = unknown;

/** A frame received from a client. */
export interface InboundMessage {
  joinRef: Ref;
  ref: Ref;
  topic: string;
  event: string;
  /** Parsed JSON, or a Buffer when the client sent a V2 binary push. */
  payload: Payload;
}

/** A push or lifecycle frame for one channel: `[join_ref, ref, topic, event, payload]`. */
export interface PushMessage {
  kind: 'push';
  joinRef: Ref;
  ref: Ref;
  topic: string;
  event: string;
  payload: Payload;
}

/** `phx_reply` to a client ref. */
export interface ReplyMessage {
  kind: 'reply';
  joinRef: Ref;
  ref: Ref;
  topic: string;
  status: string;
  response: Payload;
}

/** A broadcast (fastlane): `[null, null, topic, event, payload]`. */
export interface BroadcastMessage {
  kind: 'broadcast';
  topic: string;
  event: string;
  payload: Payload;
}

export type OutboundMessage = PushMessage | ReplyMessage | BroadcastMessage;

/** True for payloads that go out as V2 binary frames. */
export function isBinaryPayload(p: unknown): p is Uint8Array | ArrayBuffer {
  return p instanceof Uint8Array || p instanceof ArrayBuffer;
}

/** Normalises a binary payload to a Buffer without copying. */
export function toBuffer(p: Uint8Array | ArrayBuffer): Buffer {
  if (Buffer.isBuffer(p)) return p;
  if (p instanceof ArrayBuffer) return Buffer.from(p);
  return Buffer.from(p.buffer, p.byteOffset, p.byteLength);
}

/**
 * Phoenix only pushes maps (or binaries): SwiftPhoenixClient 5.3.4 drops any frame whose payload
 * is not a JSON object, so strings, arrays and null are refused at the source.
 */
export function assertPushPayload(p: unknown, what: string): void {
  if (isBinaryPayload(p)) return;
  if (p === null || typeof p !== 'object' || Array.isArray(p)) {
    throw new TypeError(
      `${what} payload must be a plain object or binary, got ${p === null ? 'null' : Array.isArray(p) ? 'array' : typeof p}`,
    );
  }
}

/**
 * Whether a JSON value nests objects and arrays more than `max` levels deep (`1` and `"a"` are 0
 * levels, `{}` and `[1]` are 1, `{"a":[1]}` is 2). Iterative and stopping at the first level too
 * many, so any value JSON.parse returned is safe to check (V8's JSON.parse does not recurse; code
 * that walks a value recursively, JSON.stringify included, does, and overflows its stack).
 */
export function nestedDeeperThan(value: unknown, max: number): boolean {
  if (value === null || typeof value !== 'object' || isBinaryPayload(value)) return false;
  const stack: Array<{ v: object; depth: number }> = [{ v: value, depth: 1 }];
  while (stack.length > 0) {
    const { v, depth } = stack.pop()!;
    if (depth > max) return true;
    for (const child of Array.isArray(v) ? v : Object.values(v)) {
      if (child !== null && typeof child === 'object') stack.push({ v: child as object, depth: depth + 1 });
    }
  }
  return false;
}
