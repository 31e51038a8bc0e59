import { migrate } from '../../src/db';
import { silentLogger } from '../../src/log';
import { ModelRegistry } from '../../src/tasks/models';
import { TaskService } from '../../src/tasks/service';
import { TaskStore } from '../../src/tasks/store';
import { BACKENDS, freshDb, type TestDb } from '../helpers/db';

/** The claim (src/tasks/store.ts): one statement that locks, skips what others hold, and leases. */
/** Caps that do not bind: the claims here are bounded by `limit` alone. */
const LIMITS = { limit: 0, global: 1000, perUser: 1000, perModel: 1000 };

describe.each(BACKENDS)('claiming tasks on %s', (backend) => {
  let t: TestDb;
  let tasks: TaskService;
  let statements: string[] = [];

  beforeAll(async () => {
    t = await freshDb(backend);
    await migrate(t.db);
    tasks = new TaskService(t.db, new ModelRegistry(), silentLogger());
    t.db.on('query', (q: { sql: string }) => statements.push(q.sql));
  });
  afterAll(async () => {
    await t.drop();
  });
  beforeEach(async () => {
    await t.db('tasks').update({ status: 'canceled' });
  });

  const make = async (n: number) => {
    const made = await Promise.all(Array.from({ length: n }, (_, i) => tasks.create('u1', { prompt: `p${i}` })));
    return made.map((m) => m.id);
  };
  const claim = (store: TaskStore, owner: string, limit: number, running: string[] = [], now = new Date()) =>
    store.claim({ owner, now, leaseUntil: new Date(now.getTime() + 30_000), running, ...LIMITS, limit });

  it('leases up to the limit in one statement (after the claim lock), counting a try, oldest first', async () => {
    const ids = await make(3);
    await t
      .db('tasks')
      .where({ id: ids[0] })
      .update({ run_after: new Date(Date.now() - 60_000) });
    statements = [];
    const rows = await claim(tasks.store, 'A', 2);
    // The transaction's advisory lock aside (and BEGIN, COMMIT), one statement reads and leases.
    expect(statements.filter((q) => /\btasks\b/.test(q))).toHaveLength(1);
    expect(statements.some((q) => /pg_advisory_xact_lock/.test(q))).toBe(true);
    expect(rows).toHaveLength(2);
    expect(rows[0]!.id === ids[0] || rows[1]!.id === ids[0]).toBe(true);
    for (const r of rows) expect(r).toMatchObject({ lease_owner: 'A', attempts: 1, status: 'queued' });
    const rest = await claim(tasks.store, 'B', 5);
    expect(rest.map((r) => r.id)).toEqual(ids.filter((id) => !rows.some((r) => r.id === id)));
    expect(await claim(tasks.store, 'C', 5)).toEqual([]);
  });

  it('leaves out tasks not due, finished, leased, or running in this process; takes lapsed leases', async () => {
    const [later, done, leased, lapsed, mine, free] = await make(6);
    const now = new Date();
    await t
      .db('tasks')
      .where({ id: later })
      .update({ run_after: new Date(now.getTime() + 60_000) });
    await t.db('tasks').where({ id: done }).update({ status: 'succeeded' });
    await t
      .db('tasks')
      .where({ id: leased })
      .update({ lease_owner: 'X', lease_expires_at: new Date(now.getTime() + 60_000) });
    await t
      .db('tasks')
      .where({ id: lapsed })
      .update({ lease_owner: 'X', lease_expires_at: new Date(now.getTime() - 1) });
    await t
      .db('tasks')
      .where({ id: mine })
      .update({ lease_owner: 'A', lease_expires_at: new Date(now.getTime() - 1) });
    const rows = await claim(tasks.store, 'A', 10, [mine!], now);
    expect(rows.map((r) => r.id).sort()).toEqual([lapsed!, free!].sort());
  });

  it('claimers at the same time get disjoint tasks (SKIP LOCKED), every task once', async () => {
    const ids = await make(40);
    const others = Array.from({ length: 4 }, () => new TaskStore(t.reopen()));
    const got = await Promise.all(
      others.map(async (store, i) => {
        const mine: string[] = [];
        for (;;) {
          const rows = await claim(store, `P${i}`, 3);
          if (rows.length === 0) return mine;
          mine.push(...rows.map((r) => r.id));
        }
      }),
    );
    const all = got.flat();
    expect(all.sort()).toEqual([...ids].sort());
  });

  const makeFor = async (user: string, n: number) => {
    const ids: string[] = [];
    // One at a time: their submission order is their order.
    for (let i = 0; i < n; i++) ids.push((await tasks.create(user, { prompt: `${user} #${i}` })).id);
    return ids;
  };
  const lease = (ids: string[], owner: string) =>
    t
      .db('tasks')
      .whereIn('id', ids)
      .update({ lease_owner: owner, lease_expires_at: new Date(Date.now() + 60_000) });
  const capped = (store: TaskStore, owner: string, caps: Partial<typeof LIMITS>) => {
    const now = new Date();
    return store.claim({ owner, now, leaseUntil: new Date(now.getTime() + 30_000), running: [], ...LIMITS, ...caps });
  };

  it('the caps count what is in flight under any lease: globally, per user, per model', async () => {
    const a = await makeFor('ann', 6);
    const b = await makeFor('bob', 6);
    await lease([a[0]!, a[1]!, b[0]!], 'other process');
    // Global 5, 3 in flight elsewhere: 2 more.
    expect(await capped(tasks.store, 'A', { limit: 100, global: 5 })).toHaveLength(2);
    await t.db('tasks').whereNotIn('id', [a[0]!, a[1]!, b[0]!]).update({ lease_owner: null, lease_expires_at: null });
    // Per user 3: ann has 2 in flight, bob 1: one more of ann's, two of bob's.
    const rows = await capped(tasks.store, 'A', { limit: 100, perUser: 3 });
    expect(rows.filter((r) => r.user_id === 'ann')).toHaveLength(1);
    expect(rows.filter((r) => r.user_id === 'bob')).toHaveLength(2);
    await t
      .db('tasks')
      .whereIn(
        'id',
        rows.map((r) => r.id),
      )
      .update({ lease_owner: null, lease_expires_at: null });
    // Per model 4 (all are the same model), 3 in flight: one more.
    expect(await capped(tasks.store, 'A', { limit: 100, perModel: 4 })).toHaveLength(1);
  });

  it("fair by user: with ann holding 30 queued (and some running), bob's one task is in the next claim", async () => {
    const a = await makeFor('ann', 30);
    await lease(a.slice(0, 5), 'A');
    const [bobs] = await makeFor('bob', 1);
    const rows = await capped(tasks.store, 'A', { limit: 1 });
    expect(rows.map((r) => r.id)).toEqual([bobs]);
    // Then ann's, oldest first (an UPDATE returns its rows in no set order).
    const next = await capped(tasks.store, 'A', { limit: 2 });
    expect(next.map((r) => r.id).sort()).toEqual(a.slice(5, 7).sort());
  });

  it('claimers at the same time never lease more than the global cap together', async () => {
    await make(40);
    const others = Array.from({ length: 4 }, () => new TaskStore(t.reopen()));
    const got = await Promise.all(
      others.map(async (store, i) => {
        let n = 0;
        for (let round = 0; round < 5; round++) n += (await capped(store, `P${i}`, { limit: 3, global: 7 })).length;
        return n;
      }),
    );
    expect(got.reduce((x, y) => x + y, 0)).toBe(7);
  });
});
