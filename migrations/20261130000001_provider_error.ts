import type { Knex } from 'knex';

// The provider's own words about a failed task (Replicate's error text or problem detail), for
// operators: the task's `error` carries a stable code and a message for the end user instead.
export async function up(knex: Knex): Promise<void> {
  await knex.schema.alterTable('tasks', (t) => {
    t.text('provider_error');
  });
}

export async function down(knex: Knex): Promise<void> {
  await knex.schema.alterTable('tasks', (t) => {
    t.dropColumn('provider_error');
  });
}
