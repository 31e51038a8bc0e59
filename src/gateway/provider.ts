import type { Config } from '../config';
import { PROVIDERS } from '../providers';
import { ProviderPace } from '../providers/http/pace';
import type { ProviderPlugin, ProviderState, RunningProvider } from '../providers/plugin';
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
  /** The in-process Replicate stand-in, in demo mode. */
  demoStandin: Standin | undefined;
}

/** Every model the configured providers serve (the model registry's list). */
export function configuredModels(config: Config, plugins: readonly ProviderPlugin[] = PROVIDERS): ModelSpec[] {
  return plugins.flatMap((p) => p.models(config));
}

const WORST: ProviderState[] = ['unauthorized', 'unreachable', 'checking', 'ok'];

/** Starts each provider that serves a model under this configuration. */
export async function startProviders(
  ctx: PartContext,
  opts: {
    tasks: { requeueLostPredictions(provider: string): Promise<unknown> };
    retry?: { attempts: number; baseMs: number; maxMs: number };
    plugins?: readonly ProviderPlugin[];
  },
): Promise<ProviderParts> {
  const running = new Map<string, RunningProvider>();
  for (const plugin of opts.plugins ?? PROVIDERS) {
    if (plugin.models(ctx.config).length === 0) continue;
    const started = await plugin.start({
      ...ctx,
      tasks: opts.tasks,
      retry: opts.retry,
      pace: (budgets) => new ProviderPace(budgets),
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
    demoStandin: (running.get('replicate') as RunningReplicate | undefined)?.demoStandin,
  };
}
