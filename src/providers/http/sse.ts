import type { StreamEvent } from '../types';

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
    let text = chunk;
    if (this.pendingCR) {
      this.pendingCR = false;
      if (text.startsWith('\n')) text = text.slice(1);
    }
    this.buffer += text;
    for (;;) {
      const m = /\r\n|\r|\n/.exec(this.buffer);
      if (!m) break;
      // A lone CR at the very end may be the first half of CRLF: wait for the next chunk.
      if (m[0] === '\r' && m.index === this.buffer.length - 1) {
        const line = this.buffer.slice(0, m.index);
        this.buffer = '';
        this.pendingCR = true;
        this.line(line, out);
        break;
      }
      const line = this.buffer.slice(0, m.index);
      this.buffer = this.buffer.slice(m.index + m[0].length);
      this.line(line, out);
    }
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

/** The events of an SSE body as they arrive (a text/event-stream answer, read to its end). */
export async function* sseEvents(
  body: AsyncIterable<unknown>,
  lastEventId: string | null = null,
): AsyncGenerator<StreamEvent> {
  const parser = new SseParser(lastEventId);
  const decoder = new TextDecoder();
  for await (const chunk of body) {
    yield* parser.push(decoder.decode(chunk as Uint8Array, { stream: true }));
  }
}
