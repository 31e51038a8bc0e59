import type { Logger } from '../log';

type Closer = { name: string; close: () => Promise<void> | void };

/**
 * Shutdown as a stack: each part registers how to stop it as it starts, and `closeAll` runs them
 * in reverse order, so nothing is stopped while something started after it still uses it. A
 * closer that fails is logged and the rest still run; the first failure is rethrown at the end.
 */
export class Closers {
  private readonly stack: Closer[] = [];
  private closing: Promise<void> | undefined;

  constructor(private readonly logger: Logger) {}

  push(name: string, close: () => Promise<void> | void): void {
    this.stack.push({ name, close });
  }

  /** Runs every closer once, last registered first; later calls wait for the same run. */
  closeAll(): Promise<void> {
    this.closing ??= this.run();
    return this.closing;
  }

  private async run(): Promise<void> {
    let first: unknown;
    for (const { name, close } of this.stack.splice(0).reverse()) {
      try {
        await close();
      } catch (err) {
        this.logger.error({ err, part: name }, 'shutdown: closing a part failed');
        first ??= err;
      }
    }
    if (first !== undefined) throw first;
  }
}
