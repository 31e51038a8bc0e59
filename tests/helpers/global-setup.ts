/**
 * Runs once before every suite (jest `globalSetup`). Says which database backends this run covers,
 * so that a run without PostgreSQL does not pass silently for one that tested both.
 */
export default async function globalSetup(): Promise<void> {
  if (!process.env.PYRE_TEST_DATABASE_URL) {
    process.stdout.write(
      '\npyre tests: PGlite only; the PostgreSQL half is skipped. To include it: ' +
        'PYRE_TEST_DATABASE_URL=postgres://user@host:5432/db npm test\n',
    );
  }
}
