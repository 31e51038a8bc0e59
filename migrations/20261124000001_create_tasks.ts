import type { Knex } from 'knex';

export async function up(knex: Knex): Promise<void> {
  await knex.schema.createTable('tasks', (t) => {
    t.uuid('id').primary();
    // Insertion order, for stable cursor paging (timestamps can tie).
    t.bigIncrements('pos', { primaryKey: false }).notNullable().unique();
    t.text('user_id').notNullable();
    t.text('task_type').notNullable();
    t.text('model').notNullable();
    t.text('provider_model').notNullable();
    t.text('status').notNullable();
    t.integer('progress');
    t.jsonb('input_data').notNullable();
    t.jsonb('provider_input').notNullable();
    t.jsonb('output');
    // The provider's own output (its URLs expire): kept beside our stored copy.
    t.jsonb('provider_output');
    t.jsonb('error');
    t.integer('attempts').notNullable().defaultTo(0);
    t.integer('max_attempts').notNullable().defaultTo(3);
    t.text('prediction_id');
    // Set just before a create is sent: a create whose answer was lost is looked up, never repeated blindly.
    t.timestamp('create_attempted_at', { useTz: true });
    t.boolean('cancel_requested').notNullable().defaultTo(false);
    t.timestamp('run_after', { useTz: true }).notNullable().defaultTo(knex.fn.now());
    t.text('lease_owner');
    t.timestamp('lease_expires_at', { useTz: true });
    t.integer('last_seq').notNullable().defaultTo(0);
    t.timestamp('inserted_at', { useTz: true }).notNullable().defaultTo(knex.fn.now());
    t.timestamp('updated_at', { useTz: true }).notNullable().defaultTo(knex.fn.now());
    t.timestamp('started_at', { useTz: true });
    t.timestamp('completed_at', { useTz: true });
    t.index(['user_id', 'pos']);
    t.index(['user_id', 'status', 'pos']);
  });
  await knex.raw(
    `ALTER TABLE tasks ADD CONSTRAINT tasks_status_check CHECK (status IN ('queued','processing','succeeded','failed','canceled'))`,
  );
  await knex.raw(
    `ALTER TABLE tasks ADD CONSTRAINT tasks_progress_check CHECK (progress IS NULL OR (progress BETWEEN 0 AND 100))`,
  );
  // The runner's claim query scans only live tasks.
  await knex.raw(`CREATE INDEX tasks_claimable ON tasks (run_after) WHERE status IN ('queued','processing')`);

  await knex.schema.createTable('task_events', (t) => {
    t.uuid('task_id').notNullable().references('id').inTable('tasks').onDelete('CASCADE');
    t.integer('seq').notNullable();
    t.text('event').notNullable();
    t.jsonb('payload').notNullable();
    t.timestamp('inserted_at', { useTz: true }).notNullable().defaultTo(knex.fn.now());
    t.primary(['task_id', 'seq']);
  });

  await knex.schema.createTable('idempotency_keys', (t) => {
    t.text('user_id').notNullable();
    t.text('key').notNullable();
    t.text('request_hash').notNullable();
    t.integer('status_code');
    t.jsonb('response');
    t.timestamp('created_at', { useTz: true }).notNullable().defaultTo(knex.fn.now());
    t.timestamp('expires_at', { useTz: true }).notNullable();
    t.primary(['user_id', 'key']);
    t.index(['expires_at']);
  });
}

export async function down(knex: Knex): Promise<void> {
  await knex.schema.dropTableIfExists('idempotency_keys');
  await knex.schema.dropTableIfExists('task_events');
  await knex.schema.dropTableIfExists('tasks');
}
