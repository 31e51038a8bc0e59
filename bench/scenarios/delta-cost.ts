/**
 * (i) acceptance 3: a 5,000-token answer costs no more per delta at its end than at its start.
 * One text task on a fresh PostgreSQL database; its answer is announced one token per delta
 * through the write path the runner uses (AnnouncedText → TaskService.appendText), one after
 * another. Printed: the mean wall time of a delta over the first and the last 500 tokens, and
 * the database's own time (pg_stat_statements is not needed: the statements are timed by
 * EXPLAIN ANALYZE once at each end), beside what the former compare-and-set read (the sum of
 * char_length over every earlier delta) costs at each end.
 *
 *   npx tsx bench/scenarios/delta-cost.ts [--tokens=5000] [--window=500]
 */
import { loadavg } from 'node:os';
import { migrate, openDatabase } from '../../src/db';
import { silentLogger } from '../../src/log';
import { AnnouncedText } from '../../src/runner/text-stream';
import { ModelRegistry } from '../../src/tasks/models';
import { TaskService } from '../../src/tasks/service';
import { nowMs } from '../lib/clock';
import { freshDatabase } from '../lib/gateway';
import { fmt, log, opt, printTable, writeResult } from '../lib/harness';

export async function runDeltaCost(): Promise<Record<string, number>> {
  const tokens = opt('tokens', 5000);
  const window = opt('window', 500);
  const db = openDatabase({ databaseUrl: freshDatabase('pyre_bench_delta_cost'), pool: { min: 1, max: 4 } });
  try {
    await migrate(db);
    const tasks = new TaskService(db, new ModelRegistry(), silentLogger());
    const { id } = await tasks.create('bench', { type: 'text', prompt: 'a long answer' });
    const text = await AnnouncedText.load({ tasks, taskId: id, may: () => true });
    const ms: number[] = [];
    for (let i = 0; i < tokens; i++) {
      const t0 = nowMs();
      await text.appendTail(` tok${i}`);
      ms.push(nowMs() - t0);
    }
    const mean = (a: number[]) => a.reduce((s, x) => s + x, 0) / a.length;
    /** The database's time for a statement, from EXPLAIN ANALYZE (ms). */
    const explain = async (sql: string, bindings: Array<string | string[]>) => {
      const r = (await db.raw(`EXPLAIN (ANALYZE, FORMAT JSON) ${sql}`, bindings)) as {
        rows: Array<{ 'QUERY PLAN': Array<{ 'Execution Time': number }> }>;
      };
      return r.rows[0]!['QUERY PLAN'][0]!['Execution Time'];
    };
    const lockRow = `SELECT * FROM tasks WHERE id = ANY(?::uuid[]) ORDER BY id FOR UPDATE`;
    const oldSum = `SELECT coalesce(sum(char_length(payload->>'delta')), 0)::int AS n FROM task_events WHERE task_id = ? AND event = 'text_delta'`;
    // The old read at the start of the answer: on a task with `window` deltas.
    const { id: early } = await tasks.create('bench', { type: 'text', prompt: 'a short answer' });
    const e = await AnnouncedText.load({ tasks, taskId: early, may: () => true });
    for (let i = 0; i < window; i++) await e.appendTail(` tok${i}`);
    const row = {
      tokens,
      'delta ms, first 500': mean(ms.slice(0, window)),
      'delta ms, last 500': mean(ms.slice(-window)),
      'lock+CAS read ms (now), start': await explain(lockRow, [[early]]),
      'lock+CAS read ms (now), end': await explain(lockRow, [[id]]),
      'sum read ms (before), start': await explain(oldSum, [early]),
      'sum read ms (before), end': await explain(oldSum, [id]),
    };
    log(`delta-cost: ${JSON.stringify(row)}`);
    printTable(
      `(i) acceptance 3: cost of a delta at the start and the end of a ${tokens}-token answer (load ${loadavg()
        .map((x) => x.toFixed(1))
        .join(' ')})`,
      [
        {
          tokens,
          'delta wall ms, first / last 500': `${fmt(row['delta ms, first 500'], 2)} / ${fmt(row['delta ms, last 500'], 2)}`,
          'its read under the lock, ms (start / end)': `${fmt(row['lock+CAS read ms (now), start'], 3)} / ${fmt(row['lock+CAS read ms (now), end'], 3)}`,
          'the former sum read, ms (start / end)': `${fmt(row['sum read ms (before), start'], 3)} / ${fmt(row['sum read ms (before), end'], 3)}`,
        },
      ],
    );
    writeResult('delta-cost', { row, loadavg: loadavg() });
    return row;
  } finally {
    await db.destroy();
  }
}

if (require.main === module) {
  runDeltaCost().then(
    () => process.exit(0),
    (e: unknown) => {
      console.error(e);
      process.exit(1);
    },
  );
}
