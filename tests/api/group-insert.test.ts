import { migrate } from '../../src/db';
import { silentLogger } from '../../src/log';
import { ModelRegistry } from '../../src/tasks/models';
import { TaskService } from '../../src/tasks/service';
import type { TaskEvent } from '../../src/tasks/task';
import { BACKENDS, freshDb, type TestDb } from '../helpers/db';

/** Group commit of new tasks (src/tasks/group-insert.ts), on the real databases. */
describe.each(BACKENDS)('creates that overlap are written together on %s', (backend) => {
  let t: TestDb;
  let tasks: TaskService;
  let statements = 0;

  beforeAll(async () => {
    t = await freshDb(backend);
    await migrate(t.db);
    tasks = new TaskService(t.db, new ModelRegistry(), silentLogger());
    t.db.on('query', (q: { sql: string }) => {
      if (/insert into "tasks"/i.test(q.sql)) statements++;
    });
  });
  afterAll(async () => {
    await t.drop();
  });

  it('200 concurrent creates: every task stored once with its first event, in far fewer statements', async () => {
    const published: TaskEvent[] = [];
    const off = tasks.onEvents((evs) => published.push(...evs));
    statements = 0;
    const made = await Promise.all(
      Array.from({ length: 200 }, (_, i) =>
        tasks.create(`user${i % 7}`, { type: i % 2 ? 'image' : 'text', prompt: `prompt ${i}` }),
      ),
    );
    off();
    expect(new Set(made.map((m) => m.id)).size).toBe(200);
    expect(statements).toBeGreaterThan(0);
    expect(statements).toBeLessThan(200 / 4);
    for (const [i, m] of made.entries()) {
      expect(m.input_data.prompt).toBe(`prompt ${i}`);
      expect(m.status).toBe('queued');
    }
    const ids = made.map((m) => m.id);
    const rows = await t.db('tasks').whereIn('id', ids).select('id', 'user_id', 'last_seq');
    expect(rows).toHaveLength(200);
    const owner = new Map(rows.map((r) => [r.id, r.user_id]));
    made.forEach((m, i) => expect(owner.get(m.id)).toBe(`user${i % 7}`));
    const events = await t.db('task_events').whereIn('task_id', ids).orderBy('task_id');
    expect(events).toHaveLength(200);
    for (const e of events) {
      expect(e.seq).toBe(1);
      expect(e.event).toBe('status');
      expect(e.payload).toEqual({ task_id: e.task_id, seq: 1, status: 'queued', progress: null, error: null });
    }
    // What listeners were told is what the database holds.
    expect(
      published
        .filter((e) => ids.includes(e.task_id))
        .map((e) => e.payload)
        .sort((a, b) => String(a.task_id).localeCompare(String(b.task_id))),
    ).toEqual(events.map((e) => e.payload));
  });

  it('one bad row in a batch fails alone: the others are stored, nothing twice', async () => {
    const taken = (await tasks.create('alice', { type: 'image', prompt: 'first' })).id;
    const before = Number((await t.db('tasks').count<{ count: string }[]>('* as count'))[0]!.count);
    const results = await Promise.allSettled([
      ...Array.from({ length: 20 }, (_, i) => tasks.create('alice', { type: 'image', prompt: `ok ${i}` })),
      tasks.create('alice', { type: 'image', prompt: 'duplicate id' }, { id: taken }),
      ...Array.from({ length: 20 }, (_, i) => tasks.create('alice', { type: 'image', prompt: `ok ${20 + i}` })),
    ]);
    const failed = results.filter((r) => r.status === 'rejected') as PromiseRejectedResult[];
    expect(failed).toHaveLength(1);
    expect(String((failed[0]!.reason as { code?: string }).code ?? failed[0]!.reason)).toMatch(
      /23505|duplicate|unique/i,
    );
    const after = Number((await t.db('tasks').count<{ count: string }[]>('* as count'))[0]!.count);
    expect(after - before).toBe(40);
    const first = await t.db('tasks').where({ id: taken }).first();
    expect(first.input_data.prompt).toBe('first');
    expect(await t.db('task_events').where({ task_id: taken })).toHaveLength(1);
  });

  it('a refused request never reaches the batch', async () => {
    statements = 0;
    await expect(tasks.create('alice', { type: 'image', prompt: '' })).rejects.toThrow();
    expect(statements).toBe(0);
  });

  it('a lone create is written at once, in one statement', async () => {
    statements = 0;
    const m = await tasks.create('carol', { prompt: 'alone' });
    expect(statements).toBe(1);
    expect((await t.db('tasks').where({ id: m.id }).first()).model).toBe(m.model);
  });
});
