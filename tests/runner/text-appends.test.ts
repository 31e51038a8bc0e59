import { migrate } from '../../src/db';
import { silentLogger } from '../../src/log';
import { ReplicateClient } from '../../src/providers/replicate/client';
import { startStandin } from '../../src/providers/replicate/standin';
import { AnnouncedText, TextStream } from '../../src/runner/text-stream';
import { ModelRegistry } from '../../src/tasks/models';
import { TaskService } from '../../src/tasks/service';
import type { TaskEvent } from '../../src/tasks/task';
import { codePoints } from '../../src/tasks/text-appends';
import { BACKENDS, freshDb, type TestDb } from '../helpers/db';
import { waitFor } from '../helpers/wait';

/**
 * The write path of streamed text (src/tasks/text-appends.ts, src/runner/text-stream.ts) on the
 * real databases: deltas of many streams written in shared transactions, a compare-and-set
 * against tasks.text_length, and a stream that coalesces while the database keeps it waiting.
 */
describe.each(BACKENDS)('text deltas written together on %s', (backend) => {
  let t: TestDb;
  let tasks: TaskService;
  const mine = () => true;

  beforeAll(async () => {
    t = await freshDb(backend);
    await migrate(t.db);
    tasks = new TaskService(t.db, new ModelRegistry(), silentLogger());
  });
  afterAll(async () => {
    await t.drop();
  });

  const newTask = async (i: number) => (await tasks.create(`user${i % 5}`, { type: 'text', prompt: `p${i}` })).id;
  const deltas = async (id: string) =>
    (await t.db('task_events').where({ task_id: id }).orderBy('seq')) as Array<{
      seq: number;
      event: string;
      payload: { delta?: string; seq: number; task_id: string };
    }>;

  it('deltas with characters that arrays and JSON must escape are stored and replayed exactly', async () => {
    const id = await newTask(1);
    const parts = ['say "hi"', ' back\\slash\\', ' {a,b}', ' NULL', ' null', '\n\t', ' é🔥€', " it's", ' \\"{}'];
    const w = await AnnouncedText.load({ tasks, taskId: id, may: mine });
    for (const p of parts) expect(await w.appendTail(p)).toBe(true);
    const rows = await deltas(id);
    const stored = rows.filter((r) => r.event === 'text_delta');
    expect(stored.map((r) => r.payload.delta)).toEqual(parts);
    expect(stored.map((r) => r.payload)).toEqual(
      stored.map((r) => ({ task_id: id, seq: r.seq, delta: r.payload.delta })),
    );
    expect((await t.db('tasks').where({ id }).first()).text_length).toBe(codePoints(parts.join('')));
  });

  it('a rolling deploy: deltas the previous version writes (without text_length) are counted, so a new writer does not repeat them', async () => {
    const id = await newTask(2);
    const w = await AnnouncedText.load({ tasks, taskId: id, may: mine });
    expect(await w.appendTail('one 🔥 ')).toBe(true);
    // The previous version's write: under the row lock, an event row and last_seq, nothing else.
    await t.db.transaction(async (trx) => {
      const row = await trx('tasks').where({ id }).forUpdate().first();
      const seq = row.last_seq + 1;
      await trx('task_events').insert({
        task_id: id,
        seq,
        event: 'text_delta',
        payload: JSON.stringify({ task_id: id, seq, delta: 'two ' }),
      });
      await trx('tasks').where({ id }).update({ last_seq: seq });
    });
    expect((await t.db('tasks').where({ id }).first()).text_length).toBe(codePoints('one 🔥 two '));
    // This writer saw the stream up to "one 🔥 two three": only "three" is new.
    expect(await w.append('one 🔥 two three')).toBe(true);
    const stored = (await deltas(id)).filter((r) => r.event === 'text_delta');
    expect(stored.map((r) => r.payload.delta)).toEqual(['one 🔥 ', 'two ', 'three']);
    expect((await t.db('tasks').where({ id }).first()).text_length).toBe(codePoints('one 🔥 two three'));
  });

  it('two writers on one task, racing with overlapping text, announce each part once', async () => {
    const id = await newTask(0);
    // Characters beyond the BMP (two UTF-16 units each) count as one, as PostgreSQL counts them.
    const text = Array.from({ length: 120 }, (_, i) => (i % 7 === 0 ? '🔥' : `w${i} `)).join('');
    const a = await AnnouncedText.load({ tasks, taskId: id, may: mine });
    const b = await AnnouncedText.load({ tasks, taskId: id, may: mine });
    // Writer a sends the text in chunks of 5 code points, writer b in chunks of 13, all at once.
    const chunks = (n: number) => {
      const cps = Array.from(text);
      const out: string[] = [];
      for (let i = 0; i < cps.length; i += n) out.push(cps.slice(i, i + n).join(''));
      return out;
    };
    const run = async (w: AnnouncedText, parts: string[]) => {
      for (const p of parts) expect(await w.appendTail(p)).toBe(true);
    };
    // Writer c, as polling does, sends whole texts so far (prefixes of growing length).
    const c = await AnnouncedText.load({ tasks, taskId: id, may: mine });
    const prefixes = [17, 40, 41, 90, 200].map((k) => Array.from(text).slice(0, k).join(''));
    await Promise.all([
      run(a, chunks(5)),
      run(b, chunks(13)),
      run({ appendTail: (p) => c.append(p) } as AnnouncedText, prefixes),
    ]);
    const evs = await deltas(id);
    const ds = evs.filter((e) => e.event === 'text_delta').map((e) => e.payload.delta!);
    expect(ds.join('')).toBe(text);
    expect(ds.every((d) => d.length > 0)).toBe(true);
    expect(evs.map((e) => e.seq)).toEqual(evs.map((_, i) => i + 1));
    for (const e of evs) expect(e.payload).toMatchObject({ task_id: id, seq: e.seq });
    const row = (await tasks.find(id))!;
    expect(row.text_length).toBe(codePoints(text));
    expect(row.text_length).toBe(Array.from(text).length);
    expect(row.last_seq).toBe(evs.length);
    // A third writer that loads now continues after it all.
    const d = await AnnouncedText.load({ tasks, taskId: id, may: mine });
    expect(d.text).toBe(text);
  });

  it('many streams in one transaction: every task gap-free, its deltas published in seq order after the commit', async () => {
    const ids = await Promise.all(Array.from({ length: 60 }, (_, i) => newTask(i)));
    const writers = await Promise.all(ids.map((taskId) => AnnouncedText.load({ tasks, taskId, may: mine })));
    const published = new Map<string, TaskEvent[]>();
    const off = tasks.onEvents((evs) => {
      for (const e of evs) published.set(e.task_id, [...(published.get(e.task_id) ?? []), e]);
    });
    const before = tasks.texts.stats.transactions;
    for (let round = 0; round < 5; round++) await Promise.all(writers.map((w, i) => w.appendTail(`r${round}t${i} `)));
    off();
    const transactions = tasks.texts.stats.transactions - before;
    // 300 deltas; at most two transactions in flight, so the writes of a round share a few.
    expect(transactions).toBeGreaterThan(0);
    expect(transactions).toBeLessThanOrEqual(5 * 3);
    for (const [i, id] of ids.entries()) {
      const evs = await deltas(id);
      expect(evs.map((e) => e.seq)).toEqual([1, 2, 3, 4, 5, 6]);
      const want = [0, 1, 2, 3, 4].map((r) => `r${r}t${i} `);
      expect(evs.slice(1).map((e) => e.payload.delta)).toEqual(want);
      expect(published.get(id)!.map((e) => e.seq)).toEqual([2, 3, 4, 5, 6]);
      expect((await tasks.find(id))!.text_length).toBe(want.join('').length);
    }
  });

  it('a finished task, or a writer that may not write, is refused and nothing is stored', async () => {
    const id = await newTask(1);
    const w = await AnnouncedText.load({ tasks, taskId: id, may: () => false });
    expect(await w.appendTail('not mine')).toBe(false);
    await tasks.apply(id, () => ({ change: { status: 'canceled' } }));
    const ok = await AnnouncedText.load({ tasks, taskId: id, may: mine });
    expect(await ok.appendTail('too late')).toBe(false);
    expect((await deltas(id)).filter((e) => e.event === 'text_delta')).toHaveLength(0);
    expect((await tasks.find(id))!.text_length).toBe(0);
  });

  it('a stream the database keeps waiting coalesces what arrives into few, larger deltas', async () => {
    const standin = await startStandin({ clock: 'virtual' });
    const provider = new ReplicateClient({ token: standin.token, baseUrl: standin.url });
    try {
      standin.faults.timelines['openai/gpt-4.1'] = { queueMs: 0, processingMs: 2000, tokens: 100 };
      const p = await provider.create({ model: 'openai/gpt-4.1', input: { prompt: 'pressure' } });
      const id = await newTask(2);
      const text = await AnnouncedText.load({ tasks, taskId: id, may: mine });
      const stream = new TextStream({ text, provider, log: silentLogger() });
      // The database is busy: another transaction holds the task's row (with PGlite, its one
      // connection) until the whole answer has arrived.
      let release!: () => void;
      const held = new Promise<void>((r) => (release = r));
      let locked!: () => void;
      const isLocked = new Promise<void>((r) => (locked = r));
      const blocker = t.db.transaction(async (trx) => {
        await trx('tasks').where({ id }).forUpdate().first();
        locked();
        await held;
      });
      await isLocked;
      const ended = new Promise<void>((r) => stream.onEnded(r));
      const run = new AbortController();
      stream.start(p.urls.stream!, run.signal);
      for (let i = 0; i < 20; i++) await standin.advance(100);
      await standin.advance(100);
      await ended; // all 100 tokens were received while the row was held
      release();
      await blocker;
      await stream.stop();
      const evs = (await deltas(id)).filter((e) => e.event === 'text_delta');
      const all = (await provider.get(p.id)).output as string[];
      expect(all).toHaveLength(100);
      expect(evs.map((e) => e.payload.delta).join('')).toBe(all.join(''));
      // One write was in flight when the row was taken; the rest went out together after it.
      expect(evs.length).toBeLessThanOrEqual(3);
      await waitFor('text_length', async () => (await tasks.find(id))!.text_length === codePoints(all.join('')));
    } finally {
      await provider.close();
      await standin.close();
    }
  });
});
