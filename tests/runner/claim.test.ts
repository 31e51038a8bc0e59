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

  it('leases up to the limit in one statement, counting a try, oldest first', async () => {
    const ids = await make(3);
    await t
      .db('tasks')
      .where({ id: ids[0] })
      .update({ run_after: new Date(Date.now() - 60_000) });
    statements = [];
    const rows = await claim(tasks.store, 'A', 2);
    expect(statements).toHaveLength(1);
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
});
