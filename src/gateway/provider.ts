import type { Config } from '../config';
import { isEmbedded, type Db } from '../db';
import { SharedProviderBudget } from '../db/provider-budget';
import { PROVIDERS } from '../providers';
import { ProviderPace, type PaceBudgets } from '../providers/http/pace';
import type { ProviderPlugin, ProviderReadiness, ProviderState, RunningProvider } from '../providers/plugin';
import type { Standin } from '../providers/replicate/standin';
import { startDemoStandin, type RunningReplicate } from '../providers/replicate/plugin';
import type { ProviderSet } from '../providers/types';
import type { ModelSpec } from '../tasks/models';
import type { PartContext } from './context';

export { startDemoStandin };

/** The providers a gateway runs with, started. */
export interface ProviderParts {
  /** By id (the runner's view). */
  clients: ProviderSet;
  /** By id, with what the HTTP side needs (webhooks, metrics, health). */
  running: ReadonlyMap<string, RunningProvider>;
  /** The worst credential check of the providers that check (/readyz), if any does. */
  state(): { state: ProviderState; detail: string | null } | undefined;
  /** Each running provider's readiness, by id (/readyz `providers`). */
  readiness(): Record<string, ProviderReadiness>;
  /** The in-process Replicate stand-in, in demo mode. */
  demoStandin: Standin | undefined;
}

/** Every model the configured providers serve (the model registry's list). */
export function configuredModels(config: Config, plugins: readonly ProviderPlugin[] = PROVIDERS): ModelSpec[] {
  return plugins.flatMap((p) => p.models(config));
}

function scaleBudgets(b: PaceBudgets, windowMs = 60_000): PaceBudgets {
  const k = 60_000 / windowMs;
  return { createsPerMinute: b.createsPerMinute * k, readsPerMinute: b.readsPerMinute * k };
}

const WORST: ProviderState[] = ['unauthorized', 'unreachable', 'checking', 'ok'];

/** Starts each provider that serves a model under this configuration. */
export async function startProviders(
  ctx: PartContext,
  opts: {
    tasks: { requeueLostPredictions(provider: string): Promise<unknown> };
    retry?: { attempts: number; baseMs: number; maxMs: number };
    plugins?: readonly ProviderPlugin[];
    /** The database the processes of the cluster share: each provider's create budget is kept there. */
    db?: Db;
    /** The budgets' window (a minute; tests scale it down with the stand-in's clock). */
    budgetWindowMs?: number;
  },
): Promise<ProviderParts> {
  const running = new Map<string, RunningProvider>();
  // Embedded PGlite is one process: its own pace is the whole account's.
  const db = opts.db && !isEmbedded(opts.db) ? opts.db : undefined;
  const log = ctx.logger.child({ component: 'provider-budget' });
  for (const plugin of opts.plugins ?? PROVIDERS) {
    if (plugin.models(ctx.config).length === 0) continue;
    const started = await plugin.start({
      ...ctx,
      tasks: opts.tasks,
      retry: opts.retry,
      pace: (budgets) =>
        new ProviderPace(
          // A scaled-down window (tests) scales this process's own buckets, which count in minutes, too.
          scaleBudgets(budgets, opts.budgetWindowMs),
          Date.now,
          db
            ? {
                create: new SharedProviderBudget(
                  db,
                  plugin.id,
                  'create',
                  budgets.createsPerMinute,
                  opts.budgetWindowMs,
                ),
              }
            : {},
          (err) =>
            log.warn(
              { provider: plugin.id, err: String(err) },
              'shared create budget unreadable; pacing this process alone',
            ),
        ),
    });
    running.set(plugin.id, started);
  }
  return {
    running,
    clients: new Map([...running].map(([id, p]) => [id, p.client])),
    state() {
      const states = [...running.values()].flatMap((p) => (p.health ? [p.health.current()] : []));
      states.sort((a, b) => WORST.indexOf(a.state) - WORST.indexOf(b.state));
      return states[0];
    },
    readiness: () => Object.fromEntries([...running].map(([id, p]) => [id, p.readiness()])),
    demoStandin: (running.get('replicate') as RunningReplicate | undefined)?.demoStandin,
  };
}
