import type { Knex } from 'knex';

// Output file URLs used to be stored absolute, built from PUBLIC_URL or the listen address (so
// `http://0.0.0.0:4000/files/…` with HOST=0.0.0.0). They are now stored relative to the gateway
// (`/files/<task_id>/<name>`) and made absolute per response. This rewrites the URLs stored before
// that name the gateway itself: only `<any origin>/files/<the row's own task id>/<name>`, a path
// no provider URL has. A provider's URL (kept in provider_output) is never touched.
// (No `?` in the SQL: knex reads it as a binding.)
const OURS = (idColumn: string) => `'"https{0,1}://[^"/]+(/files/' || ${idColumn}::text || '/[^"/]+)"'`;

export async function up(knex: Knex): Promise<void> {
  await knex.raw(
    `UPDATE tasks SET output = regexp_replace(output::text, ${OURS('id')}, '"\\1"', 'g')::jsonb
      WHERE output IS NOT NULL AND output::text LIKE '%/files/' || id::text || '/%'`,
  );
  await knex.raw(
    `UPDATE task_events SET payload = regexp_replace(payload::text, ${OURS('task_id')}, '"\\1"', 'g')::jsonb
      WHERE payload::text LIKE '%/files/' || task_id::text || '/%'`,
  );
}

// The absolute form cannot be rebuilt (the base it had is not known); relative URLs stay.
export async function down(): Promise<void> {}
