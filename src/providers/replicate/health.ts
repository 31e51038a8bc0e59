import type { Logger } from '../../log';
import type { ProviderState } from '../plugin';
import { isProviderError } from '../types';
import type { ReplicateClient } from './client';

export type { ProviderState };

/**
 * REPLICATE_API_TOKEN, checked at start with a cheap authenticated call, so that a wrong token is
 * said once, clearly, before any task fails on it; /readyz reports the state. A provider that was
 * not ok is checked again (at most every `recheckMs`) when /readyz asks.
 */
export class ProviderHealth {
  state: ProviderState = 'checking';
  /** The provider's answer when not ok (for operators: the log and /readyz). */
  detail: string | null = null;
  private checkedAt = 0;
  private running: Promise<void> | null = null;
  private readonly stopped = new AbortController();

  constructor(
    private readonly client: Pick<ReplicateClient, 'account'>,
    private readonly logger: Logger,
    private readonly opts: { timeoutMs?: number; recheckMs?: number } = {},
  ) {}

  /** Check now (one check at a time); logs when the state changes. */
  check(): Promise<void> {
    this.running ??= this.run().finally(() => {
      this.running = null;
    });
    return this.running;
  }

  /** Abandons a check in flight (the gateway is stopping). */
  stop(): void {
    this.stopped.abort();
  }

  /** The state for /readyz; starts a new check in the background when it was not ok a while ago. */
  current(): { state: ProviderState; detail: string | null } {
    if (
      this.state !== 'ok' &&
      !this.stopped.signal.aborted &&
      Date.now() - this.checkedAt > (this.opts.recheckMs ?? 30_000)
    )
      void this.check();
    return { state: this.state, detail: this.detail };
  }

  private async run(): Promise<void> {
    const before = this.state;
    try {
      const signal = AbortSignal.any([AbortSignal.timeout(this.opts.timeoutMs ?? 5000), this.stopped.signal]);
      const who = await this.client.account({ signal });
      this.state = 'ok';
      this.detail = null;
      if (before !== 'ok')
        this.logger.info({ provider: 'replicate', account: who.username }, 'provider token accepted');
    } catch (err) {
      if (this.stopped.signal.aborted) return;
      const e = err as { status?: number | null; message?: string; name?: string };
      const refused = isProviderError(err) && (e.status === 401 || e.status === 403);
      this.state = refused ? 'unauthorized' : 'unreachable';
      this.detail = e.name === 'TimeoutError' ? 'no answer within the time allowed' : (e.message ?? String(err));
      if (before !== this.state) this.logState();
    } finally {
      this.checkedAt = Date.now();
    }
  }

  private logState(): void {
    if (this.state === 'unauthorized')
      this.logger.error(
        { provider: 'replicate', detail: this.detail },
        'REPLICATE_API_TOKEN was refused by Replicate: every task will fail until it is replaced (see https://replicate.com/account/api-tokens); /readyz answers 503',
      );
    else
      this.logger.warn(
        { provider: 'replicate', detail: this.detail },
        'Replicate is not reachable; tasks wait and retry, and the check is repeated',
      );
  }
}
