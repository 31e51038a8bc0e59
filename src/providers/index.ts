import { openaiProvider } from './openai/plugin';
import type { ProviderPlugin } from './plugin';
import { replicateProvider } from './replicate/plugin';

/**
 * The providers this gateway can run models on: adding one is its folder, a line here, and its
 * configuration (docs/providers.md).
 */
export const PROVIDERS: readonly ProviderPlugin[] = [replicateProvider, openaiProvider];
