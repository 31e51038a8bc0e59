import { LocalOutputStore, type OutputStore } from '../storage/outputs';
import { S3OutputStore } from '../storage/s3';
import { Retention } from '../tasks/retention';
import type { TaskStore } from '../tasks/store';
import type { PartContext } from './context';

/** Where output files live: the S3-compatible store of STORAGE_URL, else DATA_DIR. */
export function openOutputStore(ctx: PartContext): OutputStore {
  const { config } = ctx;
  return config.storage
    ? new S3OutputStore(config.storage, ctx.logger.child({ component: 'storage' }))
    : new LocalOutputStore(config.dataDir);
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
