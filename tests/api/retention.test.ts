import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { ListObjectsV2Command } from '@aws-sdk/client-s3';
import { loadConfig, ConfigError } from '../../src/config';
import { migrate } from '../../src/db';
import { silentLogger } from '../../src/log';
import { LocalOutputStore, type OutputStore } from '../../src/storage/outputs';
import { S3OutputStore } from '../../src/storage/s3';
import { Retention } from '../../src/tasks/retention';
import { ModelRegistry } from '../../src/tasks/models';
import { TaskService } from '../../src/tasks/service';
import type { TaskStatus } from '../../src/tasks/task';
import { BACKENDS, freshDb, type TestDb } from '../helpers/db';
import { S3RVER_CREDENTIALS, startS3rver } from '../helpers/s3';

const DAY = 86_400_000;
const NOW = new Date('2026-06-01T12:00:00Z');

/** A provider output as the runner's copy reads it. */
const opener = async () => ({
  contentType: 'image/png',
  body: (async function* () {
    yield Buffer.from('\x89PNG fake image bytes');
  })(),
});

/**
 * Issue 14, item 14: RETENTION_DAYS deletes finished tasks, their events and stored files, in
 * batches, several sweepers at once; never an unfinished task.
 */
describe.each(BACKENDS)('retention on %s', (backend) => {
  let tdb: TestDb;
  let clock: Date;
  let tasks: TaskService;
  let s3: Awaited<ReturnType<typeof startS3rver>>;
  let endpoint: string;
  const dirs: string[] = [];

  beforeAll(async () => {
    s3 = await startS3rver();
    endpoint = s3.endpoint;
    Object.assign(process.env, S3RVER_CREDENTIALS);
  });
  afterAll(async () => {
    await s3?.close();
    for (const d of dirs) fs.rmSync(d, { recursive: true, force: true });
  });
  beforeEach(async () => {
    tdb = await freshDb(backend);
    await migrate(tdb.db);
    tasks = new TaskService(tdb.db, new ModelRegistry(), silentLogger(), { now: () => clock });
  });
  const afterCleanup: Array<() => void> = [];
  afterEach(async () => {
    for (const f of afterCleanup.splice(0)) f();
    await tdb.drop();
  });

  /** A task created at `at`, brought to `status` then (with a stored file when it succeeded). */
  async function taskAt(at: Date, status: TaskStatus, outputs: OutputStore): Promise<string> {
    clock = at;
    const { id } = await tasks.create('ann', { type: 'image', prompt: `${status} at ${at.toISOString()}` });
    if (status === 'queued') return id;
    await tasks.apply(id, () => ({ change: { status: 'processing', progress: 10 } }));
    if (status === 'processing') return id;
    const urls = status === 'succeeded' ? await outputs.copy(id, ['https://x.test/a.png'], opener) : undefined;
    await tasks.apply(id, () => ({
      change: { status, ...(urls ? { output: { urls } } : { error: { code: 'provider_failed', message: 'x' } }) },
    }));
    return id;
  }

  /** Old finished tasks, old unfinished ones, and a recent finished one; the sweep's expectations. */
  async function scenario(outputs: OutputStore) {
    const old = new Date(NOW.getTime() - 40 * DAY);
    const expired = [
      await taskAt(old, 'succeeded', outputs),
      await taskAt(old, 'succeeded', outputs),
      await taskAt(old, 'failed', outputs),
      await taskAt(old, 'canceled', outputs),
      await taskAt(new Date(old.getTime() + DAY), 'succeeded', outputs),
    ];
    const kept = [
      await taskAt(old, 'queued', outputs),
      await taskAt(old, 'processing', outputs),
      await taskAt(new Date(NOW.getTime() - 10 * DAY), 'succeeded', outputs),
    ];
    clock = NOW;
    return { expired, kept };
  }

  const retention = (store: TaskService['store'], outputs: OutputStore) =>
    new Retention({ store, outputs, logger: silentLogger() }, { days: 30, batch: 2, now: () => NOW });

  it('deletes old finished tasks with their events and files, in batches, by two sweepers at once', async () => {
    const dataDir = fs.mkdtempSync(path.join(os.tmpdir(), 'pyre-retention-'));
    dirs.push(dataDir);
    const outputs = new LocalOutputStore(dataDir);
    const { expired, kept } = await scenario(outputs);
    const hasFiles = (id: string) => fs.existsSync(path.join(outputs.dir, id));
    expect(expired.filter(hasFiles)).toHaveLength(3);

    // A second process: its own connection pool (PostgreSQL), the same database.
    const other = new TaskService(tdb.reopen(), new ModelRegistry(), silentLogger());
    const counts = await Promise.all([
      retention(tasks.store, outputs).sweep(),
      retention(other.store, outputs).sweep(),
    ]);
    expect(counts[0]! + counts[1]!).toBe(expired.length);

    for (const id of expired) {
      expect(await tasks.find(id)).toBeUndefined();
      expect(await tdb.db('task_events').where({ task_id: id })).toHaveLength(0);
      expect(hasFiles(id)).toBe(false);
    }
    for (const id of kept) expect((await tasks.find(id))?.id).toBe(id);
    expect(hasFiles(kept[2]!)).toBe(true);
    expect((await tasks.eventsOf((await tasks.find(kept[2]!))!)).length).toBeGreaterThan(1);
    // Nothing left to do.
    expect(await retention(tasks.store, outputs).sweep()).toBe(0);
  });

  it('deletes the files in an S3-compatible store too', async () => {
    const outputs = new S3OutputStore(
      {
        bucket: 'pyre-outputs',
        prefix: `r-${backend}`,
        endpoint,
        region: 'us-east-1',
        pathStyle: true,
        serve: 'stream',
      },
      silentLogger(),
    );
    const { expired, kept } = await scenario(outputs);
    afterCleanup.push(() => outputs.client.destroy());
    const keysOf = async (id: string) =>
      (await outputs.client.send(new ListObjectsV2Command({ Bucket: 'pyre-outputs', Prefix: `r-${backend}/${id}/` })))
        .Contents ?? [];
    expect(await keysOf(expired[0]!)).toHaveLength(1);
    expect(await retention(tasks.store, outputs).sweep()).toBe(expired.length);
    for (const id of expired) expect(await keysOf(id)).toHaveLength(0);
    expect(await keysOf(kept[2]!)).toHaveLength(1);
  });
});

describe('RETENTION_DAYS', () => {
  it('is off by default, takes whole days, and refuses anything else naming the variable', () => {
    expect(loadConfig({}).retentionDays).toBe(0);
    expect(loadConfig({ RETENTION_DAYS: '30' }).retentionDays).toBe(30);
    for (const bad of ['-1', '1.5', 'month']) expect(() => loadConfig({ RETENTION_DAYS: bad })).toThrow(ConfigError);
    expect(() => loadConfig({ RETENTION_DAYS: 'month' })).toThrow(/RETENTION_DAYS: must be an integer/);
  });
});
