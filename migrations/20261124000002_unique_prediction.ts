import type { Knex } from 'knex';

// One prediction belongs to one task: a runner that looked up a lost create can
// never attach a prediction another task already owns.
export async function up(knex: Knex): Promise<void> {
  await knex.raw(
    'CREATE UNIQUE INDEX tasks_prediction_id_unique ON tasks (prediction_id) WHERE prediction_id IS NOT NULL',
  );
}

export async function down(knex: Knex): Promise<void> {
  await knex.raw('DROP INDEX IF EXISTS tasks_prediction_id_unique');
}
