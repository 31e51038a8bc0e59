import type { Knex } from 'knex';

// A rolling deploy from a version before `tasks.text_length` (20261207100001) runs old and new
// processes side by side. The old ones insert text_delta events without moving text_length, and
// a new writer, comparing against it, would announce their text again. Events that this version
// writes say they are counted (`counted`); a trigger counts the others into text_length, under
// the row lock their writer holds. The table is locked while the trigger is made and text_length
// is recomputed from the log, so no delta falls between the two.
export async function up(knex: Knex): Promise<void> {
  await knex.raw('LOCK TABLE task_events IN SHARE ROW EXCLUSIVE MODE');
  await knex.schema.alterTable('task_events', (t) => {
    t.boolean('counted').notNullable().defaultTo(false);
  });
  await knex.raw(`
    CREATE FUNCTION pyre_count_text_delta() RETURNS trigger LANGUAGE plpgsql AS $$
    BEGIN
      UPDATE tasks SET text_length = text_length + char_length(NEW.payload->>'delta') WHERE id = NEW.task_id;
      RETURN NULL;
    END $$`);
  await knex.raw(`
    CREATE TRIGGER task_events_count_text_delta AFTER INSERT ON task_events
    FOR EACH ROW WHEN (NEW.event = 'text_delta' AND NOT NEW.counted)
    EXECUTE FUNCTION pyre_count_text_delta()`);
  await knex.raw(`
    UPDATE tasks SET text_length = d.n
    FROM (
      SELECT task_id, sum(char_length(payload->>'delta'))::int AS n
      FROM task_events WHERE event = 'text_delta' GROUP BY task_id
    ) d
    WHERE tasks.id = d.task_id AND tasks.text_length <> d.n`);
}

export async function down(knex: Knex): Promise<void> {
  await knex.raw('DROP TRIGGER IF EXISTS task_events_count_text_delta ON task_events');
  await knex.raw('DROP FUNCTION IF EXISTS pyre_count_text_delta()');
  await knex.schema.alterTable('task_events', (t) => {
    t.dropColumn('counted');
  });
}
