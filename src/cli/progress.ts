/**
 * A task's progress on stderr. On a terminal: one line redrawn in place, a bar, the
 * percentage, the status and the time so far. Elsewhere (logs, CI, tests): a line for
 * each status change and each new percentage, so nothing depends on carriage returns.
 */
export class ProgressLine {
  private shown = false;
  /** Set by clear(): the terminal's line now belongs to the streamed text, so the bar stays off. */
  private cleared = false;
  private lastLine = '';
  private status = 'queued';
  private progress: number | null = null;
  /** The realtime connection is down (phoenix.js is reconnecting). */
  private reconnecting = false;
  private readonly started = Date.now();
  private timer: NodeJS.Timeout | undefined;

  constructor(
    private readonly out: NodeJS.WriteStream = process.stderr,
    private readonly model = '',
    /** Redrawn in place (a terminal), or a line per change. */
    readonly tty = Boolean(out.isTTY) && process.env.TERM !== 'dumb',
  ) {
    if (this.tty) {
      this.timer = setInterval(() => this.draw(), 250);
      this.timer.unref();
    }
  }

  update(status: string | undefined, progress: number | null | undefined): void {
    const wasFinishing = this.finishing();
    const statusChanged = status !== undefined && status !== this.status;
    const progressChanged = progress !== undefined && progress !== this.progress;
    if (status !== undefined) this.status = status;
    if (progress !== undefined) this.progress = progress;
    if (this.tty) return this.draw();
    if (statusChanged) this.out.write(`${this.status}${this.progress !== null ? ` ${this.progress}%` : ''}\n`);
    else if (progressChanged && this.progress !== null) this.out.write(`progress ${this.progress}%\n`);
    if (this.finishing() && !wasFinishing) this.out.write(`${FINISHING}\n`);
  }

  /** The realtime connection went down (false) or came back (true). */
  connection(up: boolean): void {
    if (this.reconnecting === !up) return;
    this.reconnecting = !up;
    if (this.tty) this.draw();
    else this.out.write(up ? 'reconnected\n' : `${RECONNECTING}\n`);
  }

  /** At 100 % and still processing: the provider is done, pyre is storing the output. */
  private finishing(): boolean {
    return this.status === 'processing' && this.progress === 100;
  }

  /** What the status column says. */
  private label(): string {
    if (this.reconnecting) return RECONNECTING;
    return this.finishing() ? FINISHING : this.status.padEnd(10);
  }

  private draw(): void {
    if (this.cleared) return;
    const width = 24;
    const p = this.progress;
    const filled = p === null ? 0 : Math.round((p / 100) * width);
    const bar =
      p === null ? spinner(width, Date.now() - this.started) : `${'█'.repeat(filled)}${'░'.repeat(width - filled)}`;
    const secs = ((Date.now() - this.started) / 1000).toFixed(1);
    const line = `${bar} ${p === null ? '  …' : `${String(p).padStart(3)}%`}  ${this.label()} ${secs}s${this.model ? `  ${this.model}` : ''}`;
    if (line === this.lastLine) return;
    this.lastLine = line;
    this.out.write(`\r\x1b[2K${line}`);
    this.shown = true;
  }

  /**
   * Takes the bar off the screen for good (before text is streamed to the same terminal): a
   * later redraw's `\r\x1b[2K` would erase the text's unterminated last line.
   */
  clear(): void {
    if (this.timer) clearInterval(this.timer);
    this.timer = undefined;
    if (this.tty && this.shown) this.out.write('\r\x1b[2K');
    this.shown = false;
    this.cleared = true;
    this.lastLine = '';
  }

  /** Stops redrawing; a terminal keeps the last line. */
  done(): void {
    if (this.timer) clearInterval(this.timer);
    this.timer = undefined;
    if (this.tty && this.shown) {
      this.draw();
      this.out.write('\n');
    }
    this.shown = false;
  }
}

const RECONNECTING = 'reconnecting…';
const FINISHING = 'finishing (storing the output)';

function spinner(width: number, ms: number): string {
  const pos = Math.floor(ms / 120) % (width + 4);
  return Array.from({ length: width }, (_, i) => (i >= pos - 4 && i < pos ? '█' : '░')).join('');
}
