import { migrate } from '../../src/db';
import { RateLimitedError, TaskCreationLimit } from '../../src/db/rate-limit';
import { BACKENDS, freshDb, type TestDb } from '../helpers/db';

type Outcome = 'ok' | RateLimitedError;

async function takeMany(limit: TaskCreationLimit, user: string, n: number): Promise<Outcome[]> {
  return Promise.all(
    Array.from({ length: n }, () =>
      limit.take(user).then(
        () => 'ok' as const,
        (e: unknown) => {
          if (e instanceof RateLimitedError) return e;
          throw e;
        },
      ),
    ),
  );
}

/**
 * The task-creation limit takes for many creates in one statement (src/db/rate-limit.ts): what
 * arrives together must still be counted one by one, per user, over every process.
 */
describe.each(BACKENDS)('grouped task-creation limit on %s', (backend) => {
  let t: TestDb;
  let statements = 0;

  beforeAll(async () => {
    t = await freshDb(backend);
    await migrate(t.db);
    t.db.on('query', (q: { sql: string }) => {
      if (/task_rate_limits/i.test(q.sql)) statements++;
    });
  });
  afterAll(async () => {
    await t.drop();
  });

  it('25 creates of one user at once: exactly the burst (10) pass, in fewer statements; the rest wait', async () => {
    const limit = new TaskCreationLimit(t.db, 6); // 6 a minute, bursts of 10
    statements = 0;
    const [alice, bob] = await Promise.all([takeMany(limit, 'alice', 25), takeMany(limit, 'bob', 3)]);
    expect(alice.filter((o) => o === 'ok')).toHaveLength(10);
    const refused = alice.filter((o): o is RateLimitedError => o !== 'ok');
    expect(refused).toHaveLength(15);
    for (const e of refused) {
      expect(e.message).toMatch(/rate limited: at most 6 task submissions a minute; retry in \d+ s/);
      // A token comes back every 10 s at 6 a minute.
      expect(e.retryAfterSeconds).toBeGreaterThanOrEqual(1);
      expect(e.retryAfterSeconds).toBeLessThanOrEqual(10);
    }
    expect(bob).toEqual(['ok', 'ok', 'ok']);
    expect(statements).toBeLessThan(28);
    // The buckets hold what is left: alice none, bob 7 (less whatever refilled meanwhile).
    const rows = await t.db('task_rate_limits').whereIn('user_id', ['alice', 'bob']).orderBy('user_id');
    expect(Number(rows[0].tokens)).toBeLessThan(1);
    expect(Number(rows[1].tokens)).toBeGreaterThanOrEqual(7);
    expect(Number(rows[1].tokens)).toBeLessThan(8);
    // One at a time still counts from the same bucket.
    expect(await takeMany(limit, 'alice', 1)).toEqual([expect.any(RateLimitedError)]);
  });

  it('two processes racing on a user with no bucket yet grant the burst once in all', async () => {
    const other = t.reopen();
    try {
      const a = new TaskCreationLimit(t.db, 6);
      const b = new TaskCreationLimit(other, 6);
      const outcomes = (await Promise.all([takeMany(a, 'carol', 8), takeMany(b, 'carol', 8)])).flat();
      expect(outcomes.filter((o) => o === 'ok')).toHaveLength(10);
      expect(outcomes.filter((o) => o instanceof RateLimitedError)).toHaveLength(6);
    } finally {
      if (other !== t.db) await other.destroy();
    }
  });

  it('off (0 a minute): no statement at all', async () => {
    statements = 0;
    expect(await takeMany(new TaskCreationLimit(t.db, 0), 'dave', 50)).toHaveLength(50);
    expect(statements).toBe(0);
  });
});
