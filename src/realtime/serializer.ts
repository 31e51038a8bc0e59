/**
 * V1 (JSON objects) and V2 (JSON arrays + binary) serializers, byte-compatible with
 * Phoenix.Socket.V1.JSONSerializer and V2.JSONSerializer.
 */
import { type InboundMessage, type OutboundMessage, type Ref, isBinaryPayload, toBuffer } from './message';

/** One encoded frame: the bytes and whether they go in a binary (true) or text (false) frame. */
export interface EncodedFrame {
  data: Buffer;
  binary: boolean;
}

/** Raised for any frame the serializer cannot decode; the connection logs and drops it. */
export class ProtocolError extends Error {
  override name = 'ProtocolError';
}

export interface Serializer {
  /** Short name used in logs and as cache key: 'v1' or 'v2'. */
  readonly name: 'v1' | 'v2';
  /** Index into per-message encode caches (0 = v1, 1 = v2). */
  readonly index: number;
  encode(msg: OutboundMessage): EncodedFrame;
  decode(data: Buffer, isBinary: boolean): InboundMessage;
}

const PUSH = 0;
const REPLY = 1;
const BROADCAST = 2;

/**
 * Refs are decimal strings in both reference clients. A JSON number is kept as it is, so the
 * reply echoes the same JSON value (as Phoenix does); any other type is a protocol error.
 */
function normRef(v: unknown, what: string): Ref {
  if (v === undefined || v === null) return null;
  if (typeof v === 'string') return v;
  if (typeof v === 'number' && Number.isFinite(v)) return v;
  throw new ProtocolError(`${what} must be a string, a number or null`);
}

/** A ref as a binary-frame header field (no ref is the empty string). */
function refField(r: Ref): string {
  return r === null ? '' : String(r);
}

function jsonFrame(value: unknown): EncodedFrame {
  return { data: Buffer.from(JSON.stringify(value), 'utf8'), binary: false };
}

export const V1Serializer: Serializer = {
  name: 'v1',
  index: 0,
  encode(msg) {
    switch (msg.kind) {
      case 'reply':
        return jsonFrame({
          topic: msg.topic,
          event: 'phx_reply',
          payload: { status: msg.status, response: msg.response },
          ref: msg.ref,
        });
      case 'push':
        if (isBinaryPayload(msg.payload)) throw new ProtocolError('binary payloads need the V2 serializer');
        return jsonFrame({ topic: msg.topic, event: msg.event, payload: msg.payload, ref: msg.ref });
      case 'broadcast':
        if (isBinaryPayload(msg.payload)) throw new ProtocolError('binary payloads need the V2 serializer');
        return jsonFrame({ topic: msg.topic, event: msg.event, payload: msg.payload, ref: null });
    }
  },
  decode(data) {
    // Old Swift builds (< 3.0) send V1 JSON in binary frames, so the opcode is ignored here.
    let obj: unknown;
    try {
      obj = JSON.parse(data.toString('utf8'));
    } catch {
      throw new ProtocolError('frame is not JSON');
    }
    if (obj === null || typeof obj !== 'object' || Array.isArray(obj))
      throw new ProtocolError('V1 frame must be a JSON object');
    const m = obj as Record<string, unknown>;
    if (!('payload' in m) || !('ref' in m)) throw new ProtocolError('V1 frame needs topic, event, payload and ref');
    if (typeof m.topic !== 'string' || typeof m.event !== 'string')
      throw new ProtocolError('topic and event must be strings');
    return {
      topic: m.topic,
      event: m.event,
      payload: m.payload,
      ref: normRef(m.ref, 'ref'),
      joinRef: normRef(m.join_ref, 'join_ref'),
    };
  },
};

function byteLen(s: string, what: string): number {
  const n = Buffer.byteLength(s, 'utf8');
  if (n > 255) throw new ProtocolError(`${what} is ${n} bytes; binary frames allow at most 255`);
  return n;
}

/** Builds a V2 binary frame; every header field must fit in one length byte (Phoenix byte_size!). */
function binaryFrame(kind: number, fields: string[], payload: Buffer, names: string[]): EncodedFrame {
  const lens = fields.map((f, i) => byteLen(f, names[i]!));
  const head = 1 + fields.length + lens.reduce((a, b) => a + b, 0);
  const buf = Buffer.allocUnsafe(head + payload.length);
  buf[0] = kind;
  let o = 1;
  for (const l of lens) buf[o++] = l;
  for (const f of fields) o += buf.write(f, o, 'utf8');
  payload.copy(buf, o);
  return { data: buf, binary: true };
}

export const V2Serializer: Serializer = {
  name: 'v2',
  index: 1,
  encode(msg) {
    switch (msg.kind) {
      case 'reply':
        if (isBinaryPayload(msg.response)) {
          return binaryFrame(
            REPLY,
            [refField(msg.joinRef), refField(msg.ref), msg.topic, msg.status],
            toBuffer(msg.response),
            ['join_ref', 'ref', 'topic', 'status'],
          );
        }
        return jsonFrame([
          msg.joinRef,
          msg.ref,
          msg.topic,
          'phx_reply',
          { status: msg.status, response: msg.response },
        ]);
      case 'push':
        if (isBinaryPayload(msg.payload)) {
          return binaryFrame(PUSH, [refField(msg.joinRef), msg.topic, msg.event], toBuffer(msg.payload), [
            'join_ref',
            'topic',
            'event',
          ]);
        }
        return jsonFrame([msg.joinRef, msg.ref, msg.topic, msg.event, msg.payload]);
      case 'broadcast':
        if (isBinaryPayload(msg.payload)) {
          return binaryFrame(BROADCAST, [msg.topic, msg.event], toBuffer(msg.payload), ['topic', 'event']);
        }
        return jsonFrame([null, null, msg.topic, msg.event, msg.payload]);
    }
  },
  decode(data, isBinary) {
    return isBinary ? decodeBinary(data) : decodeText(data);
  },
};

function decodeText(data: Buffer): InboundMessage {
  let arr: unknown;
  try {
    arr = JSON.parse(data.toString('utf8'));
  } catch {
    throw new ProtocolError('frame is not JSON');
  }
  if (!Array.isArray(arr) || arr.length < 5)
    throw new ProtocolError('V2 frame must be an array of at least 5 elements');
  const [joinRef, ref, topic, event, payload] = arr as unknown[];
  if (typeof topic !== 'string' || typeof event !== 'string')
    throw new ProtocolError('topic and event must be strings');
  return { joinRef: normRef(joinRef, 'join_ref'), ref: normRef(ref, 'ref'), topic, event, payload };
}

/** Client push: kind 0, then join_ref/ref/topic/event lengths, the four strings, then raw payload. */
function decodeBinary(data: Buffer): InboundMessage {
  if (data.length < 5) throw new ProtocolError('binary frame shorter than its header');
  if (data[0] !== PUSH) throw new ProtocolError(`binary frame kind ${data[0]} is not a client push`);
  const l0 = data[1]!,
    l1 = data[2]!,
    l2 = data[3]!,
    l3 = data[4]!;
  let o = 5;
  if (o + l0 + l1 + l2 + l3 > data.length) throw new ProtocolError('binary frame header lengths exceed the frame');
  const joinRef = data.toString('utf8', o, (o += l0));
  const ref = data.toString('utf8', o, (o += l1));
  const topic = data.toString('utf8', o, (o += l2));
  const event = data.toString('utf8', o, (o += l3));
  // An empty field stays the empty string, as in Phoenix: an empty join_ref is then stale for a
  // joined topic, and a reply to an empty ref carries "" back.
  return {
    joinRef,
    ref,
    topic,
    event,
    payload: data.subarray(o),
  };
}

/**
 * Picks the serializer for a `vsn` query param the way Phoenix does: missing ⇒ "1.0.0";
 * must be a full semver; `~> 1.0.0` ⇒ V1, `~> 2.0.0` ⇒ V2; anything else ⇒ null (HTTP 403).
 */
export function negotiateSerializer(vsn: unknown): Serializer | null {
  if (vsn === undefined) return V1Serializer;
  if (typeof vsn !== 'string') return null;
  const m = /^(0|[1-9]\d*)\.(0|[1-9]\d*)\.(0|[1-9]\d*)(-[0-9A-Za-z.-]+)?(?:\+[0-9A-Za-z.-]+)?$/.exec(vsn);
  if (!m) return null;
  // `~> x.0.0` means >= x.0.0 and < x.1.0-0. Elixir's Version.match? allows pre-releases by default
  // (`allow_pre: true`), so x.0.1-rc.1 matches; x.0.0-rc.1 sorts before x.0.0 and does not.
  if (m[2] !== '0' || (m[4] !== undefined && m[3] === '0')) return null;
  if (m[1] === '1') return V1Serializer;
  if (m[1] === '2') return V2Serializer;
  return null;
}
