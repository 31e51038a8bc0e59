import type { Readable } from 'node:stream';
import type { StreamEvent } from '../types';

const LF = 10;

/**
 * An incremental parser for `text/event-stream` (WHATWG rules): lines end in CRLF, LF or CR;
 * `:` starts a comment; several `data:` lines join with `\n`; a blank line dispatches; `id`
 * persists across events (it is what a reconnect sends as `Last-Event-ID`).
 */
export class SseParser {
  private buffer = '';
  private pendingCR = false;
  private eventType = '';
  private data: string[] = [];
  private hasData = false;
  private eventId: string | null = null;
  /** The id of the last dispatched event (or the last `id:` field seen). */
  lastEventId: string | null;

  constructor(lastEventId: string | null = null) {
    this.lastEventId = lastEventId;
    this.eventId = lastEventId;
  }

  /** Feeds decoded text; returns the events completed by it. */
  push(chunk: string): StreamEvent[] {
    const out: StreamEvent[] = [];
    let buf = this.buffer + chunk;
    this.buffer = '';
    if (this.pendingCR) {
      this.pendingCR = false;
      if (buf.charCodeAt(0) === LF) buf = buf.slice(1);
    }
    let start = 0;
    let lf = buf.indexOf('\n');
    let cr = buf.indexOf('\r');
    while (lf >= 0 || cr >= 0) {
      const end = cr < 0 || (lf >= 0 && lf < cr) ? lf : cr;
      this.line(buf.slice(start, end), out);
      if (end === cr) {
        // A lone CR at the very end may be the first half of CRLF: look at the next chunk.
        if (end === buf.length - 1) {
          this.pendingCR = true;
          return out;
        }
        start = buf.charCodeAt(end + 1) === LF ? end + 2 : end + 1;
      } else start = end + 1;
      if (lf >= 0 && lf < start) lf = buf.indexOf('\n', start);
      if (cr >= 0 && cr < start) cr = buf.indexOf('\r', start);
    }
    if (start < buf.length) this.buffer = start === 0 ? buf : buf.slice(start);
    return out;
  }

  private line(line: string, out: StreamEvent[]): void {
    if (line === '') {
      if (this.hasData) {
        this.lastEventId = this.eventId;
        out.push({ event: this.eventType || 'message', id: this.eventId, data: this.data.join('\n') });
      }
      this.eventType = '';
      this.data = [];
      this.hasData = false;
      return;
    }
    if (line.startsWith(':')) return;
    const colon = line.indexOf(':');
    const field = colon < 0 ? line : line.slice(0, colon);
    let value = colon < 0 ? '' : line.slice(colon + 1);
    if (value.startsWith(' ')) value = value.slice(1);
    switch (field) {
      case 'event':
        this.eventType = value;
        break;
      case 'data':
        this.data.push(value);
        this.hasData = true;
        break;
      case 'id':
        if (!value.includes('\0')) this.eventId = value;
        break;
      default:
        break; // `retry` and unknown fields are ignored.
    }
  }
}

/** Serialises one event the way the stand-in sends it (multi-line data on several `data:` lines). */
export function formatSseEvent(ev: { event: string; id?: string | null; data: string }): string {
  let s = `event: ${ev.event}\n`;
  if (ev.id != null) s += `id: ${ev.id}\n`;
  for (const line of ev.data.split('\n')) s += `data: ${line}\n`;
  return `${s}\n`;
}

/** What an SSE reader's handler answers for an event: `stop` ends the read there. */
export type SseHandled = void | 'stop' | Promise<void | 'stop'>;

/**
 * Reads an SSE body (a text/event-stream answer), handing each event to `onEvent` in order as
 * it arrives; a handler's promise pauses the body until it settles. Resolves `stopped` when a
 * handler answered `stop` (the rest of the body is left unread), `ended` at the end of the body;
 * rejects when the body errors (an abort, a dropped connection) or a handler throws or rejects.
 * Events are taken from each chunk as it comes, without a promise per event: a stream of tokens
 * costs little more than the bytes it carries.
 */
export function readSse(
  body: Readable,
  onEvent: (ev: StreamEvent) => SseHandled,
  lastEventId: string | null = null,
): Promise<'stopped' | 'ended'> {
  const parser = new SseParser(lastEventId);
  const decoder = new TextDecoder();
  return new Promise((resolve, reject) => {
    let queue: StreamEvent[] = [];
    let next = 0;
    let waiting = false;
    let ended = false;
    let settled = false;
    const finish = (err: unknown, how: 'stopped' | 'ended' = 'ended') => {
      if (settled) return;
      settled = true;
      body.off('data', onData).off('end', onEnd).off('error', onError).off('close', onClose);
      if (err !== undefined) reject(err);
      else resolve(how);
    };
    const drain = () => {
      while (next < queue.length) {
        const ev = queue[next++]!;
        let r: SseHandled;
        try {
          r = onEvent(ev);
        } catch (err) {
          return finish(err);
        }
        if (r === 'stop') return finish(undefined, 'stopped');
        if (r) {
          waiting = true;
          body.pause();
          r.then(
            (v) => {
              waiting = false;
              if (v === 'stop') return finish(undefined, 'stopped');
              body.resume();
              drain();
            },
            (err: unknown) => finish(err),
          );
          return;
        }
      }
      queue = [];
      next = 0;
      if (ended) finish(undefined);
    };
    const onData = (chunk: Uint8Array | string) => {
      const events = parser.push(typeof chunk === 'string' ? chunk : decoder.decode(chunk, { stream: true }));
      if (events.length === 0) return;
      if (next === queue.length) {
        queue = events;
        next = 0;
      } else queue.push(...events);
      if (!waiting) drain();
    };
    const onEnd = () => {
      ended = true;
      if (!waiting) drain();
    };
    const onError = (err: unknown) => finish(err);
    // A body destroyed without an error (ours, or the connection's) ends the read as an error.
    const onClose = () => {
      if (!ended) finish(new Error('stream closed before its end'));
    };
    body.on('data', onData).on('end', onEnd).on('error', onError).on('close', onClose);
  });
}
