/** One long-poll client: a connection whose writes queue until the next poll (here, or forwarded from another node). */
import type { Connection } from '../connection';
import type { HostedTransport, TransportHost } from '../host';
import type { Fanout } from '../pubsub';
import type { EncodedFrame, Serializer } from '../serializer';
import type { LpBody } from './messages';

export const KIND = 'longpoll';

/** Where a poll's answer goes: the HTTP response here, or a bus message to the forwarding node. */
export type PollAnswer = (body: LpBody) => void;

/** What a session needs of the endpoint that holds it. */
export interface SessionOwner {
  readonly host: TransportHost;
  /** How long a poll is held open when nothing is queued. */
  readonly windowMs: number;
  /** Lines handled per ndjson POST. */
  readonly maxMessagesPerPost: number;
  /** The session ended or moved: it is no longer served here. */
  sessionEnded(s: LongPollSession): void;
}

export class LongPollSession implements HostedTransport {
  readonly kind = KIND;
  /** The random part of the token (the key in its endpoint's session map). */
  readonly sid: string;
  readonly token: string;
  conn!: Connection;
  private queue: string[] = [];
  private poll: PollAnswer | null = null;
  private pollTimer: NodeJS.Timeout | null = null;
  private flushScheduled = false;
  closed = false;
  private readonly owner: SessionOwner;

  constructor(owner: SessionOwner, sid: string, token: string) {
    this.owner = owner;
    this.sid = sid;
    this.token = token;
  }

  write(frame: EncodedFrame): void {
    if (this.closed) return;
    if (frame.binary) {
      // phoenix.js JSON-parses every long-poll message; binary cannot travel this way.
      this.owner.host.logger.warn(
        { socketId: this.conn?.id ?? null },
        'realtime: binary frame dropped on a long-poll session',
      );
      return;
    }
    this.queue.push(frame.data.toString('utf8'));
    this.scheduleAnswer();
  }

  writeFanout(f: Fanout, serializer: Serializer): void {
    let enc: EncodedFrame;
    try {
      enc = f.encode(serializer);
    } catch {
      return;
    }
    this.write(enc);
  }

  private scheduleAnswer(): void {
    if (this.poll !== null && !this.flushScheduled) {
      this.flushScheduled = true;
      setImmediate(() => {
        this.flushScheduled = false;
        this.answerPoll();
      });
    }
  }

  /** A GET with this session's token (here, or forwarded by another node). */
  listen(answer: PollAnswer): void {
    this.touch();
    if (this.poll !== null) this.finishPoll({ status: 204, token: this.token, messages: [] });
    if (this.queue.length > 0) {
      const messages = this.queue;
      this.queue = [];
      answer({ status: 200, token: this.token, messages });
      return;
    }
    this.poll = answer;
    this.pollTimer = setTimeout(
      () => this.finishPoll({ status: 204, token: this.token, messages: [] }),
      this.owner.windowMs,
    );
  }

  /** The poll's client went away before an answer: stop holding it; queued messages stay. */
  cancelPoll(answer: PollAnswer): void {
    if (this.poll === answer) this.clearPoll();
  }

  /** Messages a forwarding node could not hand over (its client left), or a handed-over session's: they go out first. */
  requeue(messages: string[]): void {
    if (this.closed || messages.length === 0) return;
    this.queue = messages.concat(this.queue);
    this.scheduleAnswer();
  }

  /**
   * A POST body's frames (ndjson lines, or one frame), handed to the connection. The answer once
   * they are handled, as Phoenix's: 200, or 408 when a join still runs after windowMs.
   */
  post(ctype: string, body: Buffer): LpBody | Promise<LpBody> {
    this.touch();
    const conn = this.conn;
    const { host, maxMessagesPerPost } = this.owner;
    if (ctype.startsWith('application/x-ndjson')) {
      let lines = body.toString('utf8').split(/\r?\n/);
      if (lines.length > maxMessagesPerPost) {
        // Phoenix 1.8 handles the first 100 lines of a POST and ignores the rest.
        host.logger.warn(
          { socketId: conn.id, lines: lines.length, max: maxMessagesPerPost },
          'realtime: long-poll POST has too many lines; the rest are ignored',
        );
        lines = lines.slice(0, maxMessagesPerPost);
      }
      for (const line of lines) {
        if (conn.closed) break;
        // An empty line (a body ending in "\n") is no message: skipped (Phoenix's session crashes).
        if (line.length === 0) continue;
        const text = line.startsWith('[');
        const data = Buffer.from(line, text ? 'utf8' : 'base64');
        if (data.length > host.maxFrameBytes) this.tooBig();
        else conn.handleFrame(data, !text);
      }
    } else if (body.length > host.maxFrameBytes) {
      this.tooBig();
    } else {
      conn.handleFrame(body, false);
    }
    // Phoenix answers once the session process has handled the frames; a join still running
    // after window_ms yields 408.
    const pending = conn.pendingJoin;
    if (pending === null) return { status: 200 };
    return new Promise<LpBody>((resolve) => {
      const timer = setTimeout(() => resolve({ status: 408 }), this.owner.windowMs);
      void pending.then(() => {
        clearTimeout(timer);
        resolve({ status: 200 });
      });
    });
  }

  private tooBig(): void {
    this.owner.host.counters.protocolErrors++;
    this.owner.host.logger.warn(
      { socketId: this.conn.id },
      'realtime: long-poll frame larger than maxFrameBytes dropped',
    );
  }

  private answerPoll(): void {
    if (this.poll === null || this.queue.length === 0) return;
    const messages = this.queue;
    this.queue = [];
    this.finishPoll({ status: 200, token: this.token, messages });
  }

  private finishPoll(body: LpBody): void {
    const answer = this.poll;
    this.clearPoll();
    answer?.(body);
    this.touch();
  }

  private clearPoll(): void {
    this.poll = null;
    if (this.pollTimer !== null) clearTimeout(this.pollTimer);
    this.pollTimer = null;
  }

  touch(): void {
    if (this.conn) this.conn.lastSeen = Date.now();
  }

  /** The messages not delivered yet, taken out (a handover carries them). */
  takeQueue(): string[] {
    const q = this.queue;
    this.queue = [];
    return q;
  }

  /**
   * Handed to another node (its connection already ended here): requests for it now go there.
   * A held poll is answered with `answer` once it is known: once a node has the session, its
   * token, which names that node, so the client's next requests go there directly; 410 when no
   * live node took it.
   */
  async movedTo(answer: Promise<LpBody>): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    this.owner.sessionEnded(this);
    this.queue = [];
    this.finishPoll(await answer);
  }

  terminate(): void {
    this.close();
  }

  close(): void {
    if (this.closed) return;
    this.closed = true;
    this.owner.sessionEnded(this);
    // A held poll learns the session is gone; phoenix.js then reconnects and rejoins.
    this.finishPoll({ status: 410 });
    this.queue = [];
    (this.conn as Connection | undefined)?.transportClosed();
  }
}
