import { Socket, type Channel } from 'phoenix';
import WebSocket from 'ws';
import { EXIT, pyreCommand, type GatewayClient } from './client';
import { whenStdoutCloses } from './pipe';
import { ProgressLine } from './progress';
import { RESPONSE_EVENTS, TASK_EVENT_NAMES } from '../tasks/events';
import type { TaskJson } from '../tasks/task';

/** What the task channel pushes; every event carries some of these (docs/contract.md). */
export interface TaskEventPayload {
  seq?: number;
  status?: string;
  progress?: number | null;
  message?: string;
  delta?: string;
  output?: { urls?: string[]; text?: string } | null;
  error?: { code?: string; message?: string } | null;
}

export interface FollowOptions {
  json?: boolean;
  timeout?: number;
  quiet?: boolean;
}

/** The statuses a task ends in. */
const ENDED = new Set(['succeeded', 'failed', 'canceled']);

/** The final result events (the contract, src/tasks/events.ts). */
const RESPONSES = new Set<string>(RESPONSE_EVENTS);

/** The events `follow` listens to on `task:<id>`: every task event. */
export const FOLLOWED_EVENTS: readonly string[] = TASK_EVENT_NAMES;

/** The command that picks a task up again, named in every "it keeps running" message. */
export const watchHint = (taskId: string) => `follow it again with \`${pyreCommand()} watch ${taskId}\``;

/** Follows a task on its channel until its final event; prints the result. Resolves to the exit code. */
export function follow(client: GatewayClient, taskId: string, task: TaskJson, opts: FollowOptions): Promise<number> {
  return new TaskFollower(client, taskId, task, opts).run();
}

/**
 * One follow of one task: joins `task:<id>` with `last_seq` (so a rejoin after an outage gets
 * what it missed, once), shows progress, says "reconnecting…" while the connection is down and
 * gives up after PYRE_RECONNECT_GIVE_UP_MS (15 s) without one.
 */
class TaskFollower {
  private readonly bar: ProgressLine | null;
  private readonly socket: Socket;
  /** The task had ended before the follow began: its events are history, the bar shows only the end. */
  private readonly ended: boolean;
  private streamed = '';
  private lastSeq = 0;
  private lostSince: number | null = null;
  private finished = false;
  private readonly timers: NodeJS.Timeout[] = [];
  private resolve: (code: number) => void = () => {};
  private readonly onInterrupt = () =>
    this.finish(EXIT.interrupted, `interrupted; task ${this.taskId} keeps running (${watchHint(this.taskId)})`);

  constructor(
    private readonly client: GatewayClient,
    private readonly taskId: string,
    task: TaskJson,
    private readonly opts: FollowOptions,
  ) {
    this.ended = ENDED.has(task.status);
    this.bar = opts.quiet ? null : new ProgressLine(process.stderr, task.model);
    // Off a terminal a running task's state is not printed first: the replay from seq 0 that
    // follows prints its history in order, and a line for the state now would read as a restart.
    if (this.ended || this.bar?.tty) this.bar?.update(task.status, task.progress);
    this.socket = new Socket(client.socketUrl(), {
      transport: WebSocket as unknown as typeof globalThis.WebSocket,
      params: client.token ? { token: client.token } : {},
      reconnectAfterMs: (tries: number) => [200, 500, 1000, 2000][tries - 1] ?? 3000,
      rejoinAfterMs: (tries: number) => [200, 500, 1000][tries - 1] ?? 2000,
    });
  }

  run(): Promise<number> {
    return new Promise<number>((resolve) => {
      this.resolve = resolve;
      process.once('SIGINT', this.onInterrupt);
      whenStdoutCloses(() =>
        this.finish(
          EXIT.ok,
          `standard output was closed; task ${this.taskId} keeps running (${watchHint(this.taskId)})`,
        ),
      );
      if (this.opts.timeout)
        this.timers.push(
          setTimeout(
            () =>
              this.finish(
                EXIT.timeout,
                `task ${this.taskId} did not finish within ${this.opts.timeout} s; it keeps running (${watchHint(this.taskId)})`,
              ),
            this.opts.timeout * 1000,
          ),
        );
      this.watchConnection();
      this.join();
      this.socket.connect();
    });
  }

  private finish(code: number, message?: string): void {
    if (this.finished) return;
    this.finished = true;
    for (const t of this.timers) clearTimeout(t); // intervals too: Node's timers are one kind
    process.removeListener('SIGINT', this.onInterrupt);
    this.bar?.done();
    if (message) process.stderr.write(`pyre: ${message}\n`);
    this.socket.disconnect(() => this.resolve(code));
    // disconnect's callback may not run if the socket never opened
    setTimeout(() => this.resolve(code), 200).unref();
  }

  /** phoenix.js reconnects for ever; a command says so while it does, and gives up after a while. */
  private watchConnection(): void {
    const giveUpMs = Number(process.env.PYRE_RECONNECT_GIVE_UP_MS ?? 15_000);
    this.socket.onError(() => this.lost());
    this.socket.onOpen(() => {
      if (this.lostSince !== null) this.bar?.connection(true);
      this.lostSince = null;
    });
    this.timers.push(
      setInterval(() => {
        if (this.lostSince !== null && Date.now() - this.lostSince > giveUpMs)
          this.finish(
            EXIT.unavailable,
            `lost the realtime connection to ${this.client.url}; task ${this.taskId} keeps running (${watchHint(this.taskId)})`,
          );
      }, 250),
    );
  }

  private lost(): void {
    if (this.lostSince === null && !this.finished) this.bar?.connection(false);
    this.lostSince ??= Date.now();
  }

  private join(): void {
    // From seq 0: everything the task did is replayed, then live events follow, once each; a
    // rejoin asks for the events after the last one seen.
    const channel: Channel = this.socket.channel(`task:${this.taskId}`, () => ({ last_seq: this.lastSeq }));
    for (const ev of FOLLOWED_EVENTS) channel.on(ev, (p: TaskEventPayload) => this.onEvent(ev, p));
    channel
      .join(10_000)
      .receive('error', (r: { reason?: string }) => {
        const reason = r?.reason ?? JSON.stringify(r);
        this.finish(
          reason === 'unauthorized' ? EXIT.noperm : EXIT.failure,
          `could not follow task ${this.taskId}: ${reason}`,
        );
      })
      .receive('timeout', () => this.lost());
  }

  private onEvent(event: string, p: TaskEventPayload): void {
    if (typeof p.seq === 'number') {
      if (p.seq <= this.lastSeq) return;
      this.lastSeq = p.seq;
    }
    if (this.ended && (event === 'status' || event === 'progress')) return; // history: the end is shown
    if (event === 'status') this.bar?.update(p.status, p.progress ?? undefined);
    else if (event === 'progress') this.bar?.update(undefined, p.progress);
    else if (event === 'text_delta' && !this.opts.json) {
      if (this.streamed === '') this.bar?.clear();
      this.streamed += p.delta ?? '';
      process.stdout.write(p.delta ?? '');
    } else if (RESPONSES.has(event)) void (p.status === 'success' ? this.succeeded(p) : this.failed(p));
  }

  private async succeeded(p: TaskEventPayload): Promise<void> {
    if (this.opts.json) {
      const { data } = await this.client
        .request<{ data: unknown }>('GET', `/api/tasks/${this.taskId}`)
        .catch(() => ({ data: { id: this.taskId, output: p.output } }));
      this.bar?.done();
      process.stdout.write(`${JSON.stringify(data, null, 2)}\n`);
    } else if (typeof p.output?.text === 'string') {
      // A text output (what a kind outputs is in its event, not in its name).
      const text: string = p.output?.text ?? '';
      const streamed = this.streamed;
      // Deltas already printed what they carried; print what they did not.
      process.stdout.write(text.startsWith(streamed) ? text.slice(streamed.length) : streamed ? `\n${text}` : text);
      if (!(streamed + text).endsWith('\n')) process.stdout.write('\n');
    } else {
      this.bar?.done();
      for (const u of p.output?.urls ?? []) process.stdout.write(`${u}\n`);
    }
    this.finish(EXIT.ok);
  }

  private failed(p: TaskEventPayload): void {
    if (this.streamed && !this.streamed.endsWith('\n')) process.stdout.write('\n');
    const err = p.error ?? {};
    this.finish(
      EXIT.failure,
      err.code === 'canceled'
        ? `task ${this.taskId} was canceled`
        : `task ${this.taskId} failed: ${err.code ?? 'error'}: ${err.message ?? 'no reason given'}`,
    );
  }
}
