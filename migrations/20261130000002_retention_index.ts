import type { Knex } from 'knex';

// Retention (RETENTION_DAYS) deletes finished tasks by age, oldest first, in batches.
export async function up(knex: Knex): Promise<void> {
  await knex.raw(
    `CREATE INDEX tasks_finished_by_age ON tasks (completed_at) WHERE status IN ('succeeded','failed','canceled')`,
  );
}

export async function down(knex: Knex): Promise<void> {
  await knex.raw('DROP INDEX IF EXISTS tasks_finished_by_age');
}
