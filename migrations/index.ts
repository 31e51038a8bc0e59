import type { Knex } from 'knex';
import * as createTasks from './20261124000001_create_tasks';
import * as uniquePrediction from './20261124000002_unique_prediction';
import * as relativeOutputUrls from './20261129000001_relative_output_urls';
import * as taskRateLimits from './20261129000002_task_rate_limits';
import * as providerError from './20261130000001_provider_error';
import * as retentionIndex from './20261130000002_retention_index';
import * as textLength from './20261207100001_text_length';
import * as taskProvider from './20261207200001_task_provider';
import * as providerBudgets from './20261207200002_provider_budgets';
import * as legacyTextDeltas from './20261207300001_legacy_text_deltas';

/**
 * The migrations, in order. Listed in code (not discovered on disk) so that the
 * same list runs from TypeScript sources, compiled JavaScript and the Docker image.
 */
export const migrations: ReadonlyArray<[name: string, migration: Knex.Migration]> = [
  ['20261124000001_create_tasks', createTasks],
  ['20261124000002_unique_prediction', uniquePrediction],
  ['20261129000001_relative_output_urls', relativeOutputUrls],
  ['20261129000002_task_rate_limits', taskRateLimits],
  ['20261130000001_provider_error', providerError],
  ['20261130000002_retention_index', retentionIndex],
  ['20261207100001_text_length', textLength],
  ['20261207200001_task_provider', taskProvider],
  ['20261207200002_provider_budgets', providerBudgets],
  ['20261207300001_legacy_text_deltas', legacyTextDeltas],
];
