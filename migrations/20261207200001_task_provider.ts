import type { Knex } from 'knex';

// Providers are an open set: each task records the provider its model runs on (what a resumed
// run, a webhook and a cancel are addressed to), and the token usage a provider reports.
// Tasks stored before ran on Replicate, the only provider then.
export async function up(knex: Knex): Promise<void> {
  await knex.schema.alterTable('tasks', (t) => {
    t.text('provider').notNullable().defaultTo('replicate');
    t.jsonb('usage');
  });
}

export async function down(knex: Knex): Promise<void> {
  await knex.schema.alterTable('tasks', (t) => {
    t.dropColumn('usage');
    t.dropColumn('provider');
  });
}
