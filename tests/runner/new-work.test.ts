import { TEST_PG_URL } from '../helpers/db';
import { createTask, getTask, startRunnerEnv, waitFor } from './helpers';

/**
 * New work wakes the runners of other processes through the cluster bus (NOTIFY after the insert
 * commits, or Redis with PYRE_TEST_BUS=redis): a task created on a process whose runner is off is claimed by another
 * process at once, not at its next poll (here an hour away).
 */
const suite = TEST_PG_URL ? describe : describe.skip;

suite('new work across processes (needs PYRE_TEST_DATABASE_URL)', () => {
  it('a task created on an API-only process is claimed by another process without waiting for its poll', async () => {
    const api = await startRunnerEnv({ backend: 'postgres', env: { RUNNER_ENABLED: 'false' } });
    const worker = await startRunnerEnv({
      backend: 'postgres',
      tdb: api.tdb,
      standinInstance: api.standin,
      runner: { claimIntervalMs: 3_600_000 },
    });
    try {
      // The worker's start-up claim has run (nothing to do); its next poll is an hour away.
      await waitFor('the worker to listen for new work', () => worker.gw.bus?.status().channels.new_work === 'ok');
      const id = await createTask(api.url, { type: 'text', model: 'gpt-4.1', prompt: 'wake the other process' });
      const claimed = await waitFor(
        'the worker to claim the task',
        async () => (await api.gw.tasks.find(id))?.lease_owner,
        20_000,
      );
      expect(claimed).toBe(worker.gw.runner.owner);
      expect((await getTask(api.url, id)).status).not.toBe('failed');
    } finally {
      await worker.close();
      await api.close();
    }
  }, 60_000);
});
