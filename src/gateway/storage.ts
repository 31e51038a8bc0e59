import { LocalOutputStore, type OutputStore } from '../storage/outputs';
import type { S3OutputStore } from '../storage/s3';
import { Retention } from '../tasks/retention';
import type { TaskStore } from '../tasks/store';
import type { PartContext } from './context';

/** Where output files live: the S3-compatible store of STORAGE_URL, else DATA_DIR. */
export function openOutputStore(ctx: PartContext): OutputStore {
  const { config } = ctx;
  if (!config.storage) return new LocalOutputStore(config.dataDir);
  // Loaded only when configured: the AWS SDK is a few hundred modules that a gateway writing to
  // DATA_DIR (and every test suite) would load for nothing.
  // eslint-disable-next-line @typescript-eslint/no-require-imports -- lazy loading, see above
  const { S3OutputStore: Store } = require('../storage/s3') as { S3OutputStore: typeof S3OutputStore };
  return new Store(config.storage, ctx.logger.child({ component: 'storage' }));
}

/** RETENTION_DAYS: the sweep of old finished tasks, their events and files (nothing when 0). */
export function startRetention(ctx: PartContext, store: TaskStore, outputs: OutputStore): void {
  const days = ctx.config.retentionDays;
  if (days <= 0) return;
  const retention = new Retention(
    { store, outputs, logger: ctx.logger.child({ component: 'retention' }) },
    { days, now: ctx.now },
  );
  retention.start();
  ctx.closers.push('retention', () => retention.stop());
}
