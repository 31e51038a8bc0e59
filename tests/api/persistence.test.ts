import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { createGateway } from '../../src/app';
import { openDatabase } from '../../src/db';
import { silentLogger } from '../../src/log';
import { freshDb, TEST_PG_URL } from '../helpers/db';
import { call, testConfig } from '../helpers/gateway';
import { waitFor } from '../runner/helpers';

describe('tasks survive a restart on embedded PGlite', () => {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'pyre-restart-'));
  afterAll(() => fs.rmSync(dir, { recursive: true, force: true }));

  it('a task created before a restart is there after it, with its events', async () => {
    const config = testConfig({ DATA_DIR: dir });
    const first = await createGateway({ config, logger: silentLogger() });
    const url1 = await first.start();
    const created = await call(`${url1}/api/tasks`, { body: { input_data: { type: 'video', prompt: 'a cat' } } });
    expect(created.status).toBe(202);
    await first.close();

    expect(fs.existsSync(path.join(dir, 'pglite'))).toBe(true);
    const second = await createGateway({ config, logger: silentLogger() });
    const url2 = await second.start();
    try {
      const got = await call(`${url2}/api/tasks/${created.body.task_id}`);
      expect(got.status).toBe(200);
      expect(got.body.data).toMatchObject({
        id: created.body.task_id,
        model: 'bytedance/seedance-1-pro',
        status: 'queued',
      });
      const events = await call(`${url2}/api/tasks/${created.body.task_id}/events`);
      expect(events.body.data).toHaveLength(1);
    } finally {
      await second.close();
    }
  }, 120_000);

  it("demo mode: a task whose prediction was on the previous run's stand-in starts over after a restart, and succeeds", async () => {
    const config = testConfig({ DATA_DIR: dir });
    const first = await createGateway({ config, logger: silentLogger() });
    const url1 = await first.start();
    const created = await call(`${url1}/api/tasks`, {
      body: { input_data: { type: 'image', prompt: 'lost on restart' } },
    });
    const id = created.body.task_id;
    // As the previous run left it: created on its stand-in, processing, then the process stopped.
    await first.tasks.apply(id, () => ({
      change: { status: 'processing', prediction_id: 'gone-with-the-old-standin', progress: 40 },
    }));
    await first.close();

    const second = await createGateway({
      config: testConfig({ DATA_DIR: dir, RUNNER_ENABLED: 'true' }),
      logger: silentLogger(),
    });
    const url2 = await second.start();
    try {
      const task = await waitFor('the task to end', async () => {
        const t = (await call(`${url2}/api/tasks/${id}`)).body.data;
        return t.status === 'succeeded' || t.status === 'failed' ? t : null;
      });
      expect(task).toMatchObject({ status: 'succeeded', error: null, attempts: 1 });
      const row = await second.tasks.find(id);
      expect(row!.prediction_id).not.toBe('gone-with-the-old-standin');
      const statuses = (await call(`${url2}/api/tasks/${id}/events`)).body.data
        .filter((e: any) => e.event === 'status')
        .map((e: any) => e.payload.status);
      expect(statuses).toEqual(['queued', 'processing', 'queued', 'processing', 'succeeded']);
    } finally {
      await second.close();
    }
  }, 120_000);
});

(TEST_PG_URL ? describe : describe.skip)('two gateway processes on one PostgreSQL', () => {
  it('see the same tasks', async () => {
    const tdb = await freshDb('postgres');
    const mk = () =>
      createGateway({
        config: testConfig(),
        logger: silentLogger(),
        db: openDatabase({ databaseUrl: TEST_PG_URL, searchPath: tdb.schema }),
      });
    const a = await mk();
    const b = await mk();
    const [ua, ub] = [await a.start(), await b.start()];
    try {
      const created = await call(`${ua}/api/tasks`, { body: { input_data: { type: 'image', prompt: 'shared' } } });
      const seen = await call(`${ub}/api/tasks/${created.body.task_id}`);
      expect(seen.status).toBe(200);
      expect(seen.body.data.id).toBe(created.body.task_id);
      const canceled = await call(`${ub}/api/tasks/${created.body.task_id}/cancel`, { method: 'POST' });
      expect(canceled.body.data.status).toBe('canceled');
      expect((await call(`${ua}/api/tasks/${created.body.task_id}`)).body.data.status).toBe('canceled');
    } finally {
      await a.close();
      await b.close();
      await a.db.destroy();
      await b.db.destroy();
      await tdb.drop();
    }
  });
});
