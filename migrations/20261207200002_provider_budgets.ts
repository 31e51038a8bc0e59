import type { Knex } from 'knex';

// A provider's create budget shared by every gateway process: one token bucket per provider and
// kind, taken by one atomic statement on the database's clock (as task_rate_limits does for users).
export async function up(knex: Knex): Promise<void> {
  await knex.schema.createTable('provider_budgets', (t) => {
    t.text('provider').notNullable();
    t.text('kind').notNullable();
    t.double('tokens').notNullable();
    t.timestamp('refilled_at', { useTz: true }).notNullable().defaultTo(knex.fn.now());
    t.primary(['provider', 'kind']);
  });
}

export async function down(knex: Knex): Promise<void> {
  await knex.schema.dropTableIfExists('provider_budgets');
}
