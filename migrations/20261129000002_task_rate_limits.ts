import type { Knex } from 'knex';

// The task-creation limit's token buckets, one row per user, shared by every gateway process
// (RATE_LIMIT_TASKS_PER_MINUTE holds across processes and across REST and channel creates).
export async function up(knex: Knex): Promise<void> {
  await knex.schema.createTable('task_rate_limits', (t) => {
    t.text('user_id').primary();
    t.double('tokens').notNullable();
    t.timestamp('refilled_at', { useTz: true }).notNullable().defaultTo(knex.fn.now());
  });
}

export async function down(knex: Knex): Promise<void> {
  await knex.schema.dropTableIfExists('task_rate_limits');
}
