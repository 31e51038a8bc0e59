/** Which bench servers can run in this checkout (pyre needs src/realtime). */
import { existsSync } from 'node:fs';
import { join } from 'node:path';
import { BENCH_DIR } from './harness';

export function pyreAvailable(): boolean {
  return (
    existsSync(join(BENCH_DIR, '..', 'src', 'realtime', 'index.ts')) ||
    existsSync(join(BENCH_DIR, '..', 'src', 'realtime', 'server.ts'))
  );
}

export function availableServers(): string[] {
  return pyreAvailable() ? ['pyre', 'ws', 'sio'] : ['ws', 'sio'];
}
