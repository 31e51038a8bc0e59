/**
 * `npm run bench`: every scenario in turn, pyre beside bare ws and Socket.IO 4, one table each,
 * JSON per scenario in bench/results/ and a combined markdown report in bench/results/latest.md.
 * Bounded: each scenario has its own time limit, and the whole run stops after --max-minutes.
 *
 *   npm run bench [-- --only=fanout,idle] [--quick]
 */
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { runBigFanout } from './scenarios/bigfanout';
import { runBus } from './scenarios/bus';
import { runConnect } from './scenarios/connect';
import { runDeltaCost } from './scenarios/delta-cost';
import { runFanout } from './scenarios/fanout';
import { runIdle } from './scenarios/idle';
import { runInflight } from './scenarios/inflight';
import { runStorm } from './scenarios/storm';
import { runStreams } from './scenarios/streams';
import { runTaskStatus } from './scenarios/task-status';
import { runTasksHttp } from './scenarios/tasks-http';
import { RESULTS_DIR, deadline, log, machine, opt, optList, printedTables } from './lib/harness';
import { mkdirSync } from 'node:fs';

// Cheapest and most telling first; the 100k-socket scenario last.
const scenarios: Record<string, () => Promise<unknown>> = {
  fanout: runFanout,
  connect: runConnect,
  'tasks-http': runTasksHttp,
  'task-status': runTaskStatus,
  storm: runStorm,
  idle: runIdle,
  bigfanout: runBigFanout,
  inflight: runInflight,
  bus: runBus,
  streams: runStreams,
  'delta-cost': runDeltaCost,
};

async function main(): Promise<void> {
  const only = optList('only', Object.keys(scenarios));
  const bound = deadline(opt('max-minutes', 50) * 60_000, 'run-all');
  const m = machine();
  log(`bench: ${only.join(', ')} on ${JSON.stringify(m)}`);
  const failed: string[] = [];
  for (const name of only) {
    const run = scenarios[name];
    if (!run) throw new Error(`unknown scenario ${name}; known: ${Object.keys(scenarios).join(', ')}`);
    log(`── ${name}`);
    try {
      await run();
    } catch (e) {
      failed.push(name);
      console.error(`${name} failed:`, e);
    }
  }
  clearTimeout(bound);
  mkdirSync(RESULTS_DIR, { recursive: true });
  writeFileSync(
    join(RESULTS_DIR, 'run-all.json'),
    JSON.stringify({ machine: m, finished: new Date().toISOString(), failed }, null, 2),
  );
  const head =
    `# bench run ${m.date}\n\nMachine: ${m.cpus} × ${m.cpuModel}, ${m.memGiB} GiB, Node ${m.node}; ` +
    `load average at start ${JSON.stringify(m.loadavg)}.\nCommand: \`npm run bench -- ${process.argv.slice(2).join(' ')}\`\n`;
  writeFileSync(join(RESULTS_DIR, 'latest.md'), [head, ...printedTables].join('\n'));
  if (failed.length) {
    console.error(`failed: ${failed.join(', ')}`);
    process.exit(1);
  }
}

main().then(
  () => process.exit(0),
  (e: unknown) => {
    console.error(e);
    process.exit(1);
  },
);
