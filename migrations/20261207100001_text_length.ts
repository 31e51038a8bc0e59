import type { Knex } from 'knex';

// The length of a text task's announced text (its text_delta events joined), in characters
// (code points, as char_length counts them): a delta is written as a compare-and-set against it
// under the row lock, so its cost does not grow with the answer (it used to be summed over every
// earlier delta). Tasks that have deltas already get theirs from the log.
export async function up(knex: Knex): Promise<void> {
  await knex.schema.alterTable('tasks', (t) => {
    t.integer('text_length').notNullable().defaultTo(0);
  });
  await knex.raw(`
    UPDATE tasks SET text_length = d.n
    FROM (
      SELECT task_id, sum(char_length(payload->>'delta'))::int AS n
      FROM task_events WHERE event = 'text_delta' GROUP BY task_id
    ) d
    WHERE tasks.id = d.task_id`);
}

export async function down(knex: Knex): Promise<void> {
  await knex.schema.alterTable('tasks', (t) => {
    t.dropColumn('text_length');
  });
}
