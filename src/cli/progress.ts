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
  private readonly started = Date.now();
  private timer: NodeJS.Timeout | undefined;

  constructor(
    private readonly out: NodeJS.WriteStream = process.stderr,
    private readonly label = '',
    private readonly tty = Boolean(out.isTTY) && process.env.TERM !== 'dumb',
  ) {
    if (this.tty) {
      this.timer = setInterval(() => this.draw(), 250);
      this.timer.unref();
    }
  }

  update(status: string | undefined, progress: number | null | undefined): void {
    const statusChanged = status !== undefined && status !== this.status;
    const progressChanged = progress !== undefined && progress !== this.progress;
    if (status !== undefined) this.status = status;
    if (progress !== undefined) this.progress = progress;
    if (this.tty) this.draw();
    else if (statusChanged) this.out.write(`${this.status}${this.progress !== null ? ` ${this.progress}%` : ''}\n`);
    else if (progressChanged && this.progress !== null) this.out.write(`progress ${this.progress}%\n`);
  }

  private draw(): void {
    if (this.cleared) return;
    const width = 24;
    const p = this.progress;
    const filled = p === null ? 0 : Math.round((p / 100) * width);
    const bar =
      p === null ? spinner(width, Date.now() - this.started) : `${'█'.repeat(filled)}${'░'.repeat(width - filled)}`;
    const secs = ((Date.now() - this.started) / 1000).toFixed(1);
    const line = `${bar} ${p === null ? '  …' : `${String(p).padStart(3)}%`}  ${this.status.padEnd(10)} ${secs}s${this.label ? `  ${this.label}` : ''}`;
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

function spinner(width: number, ms: number): string {
  const pos = Math.floor(ms / 120) % (width + 4);
  return Array.from({ length: width }, (_, i) => (i >= pos - 4 && i < pos ? '█' : '░')).join('');
}
