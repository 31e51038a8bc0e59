import { EXIT } from './client';

let installed = false;
let closed = false;
let onStdoutClosed: () => void = () => process.exit(EXIT.ok);

/**
 * A reader that stops early (`pyre submit … | head -c 30`) closes the pipe: the next write fails
 * with EPIPE. Like `git log | head`, the command then ends quietly instead of with Node's unhandled
 * 'error' stack; a follow says on stderr (if that is still open) that the task keeps running.
 */
export function quietOnClosedPipes(): void {
  if (installed) return;
  installed = true;
  process.stdout.on('error', (err: NodeJS.ErrnoException) => {
    if (err.code !== 'EPIPE') throw err;
    if (closed) return;
    closed = true;
    onStdoutClosed();
  });
  // Nothing can be told to a closed stderr: its errors are dropped.
  process.stderr.on('error', () => {});
}

/** What to do when stdout is closed by its reader (default: exit 0 at once). */
export function whenStdoutCloses(action: () => void): void {
  onStdoutClosed = action;
}
