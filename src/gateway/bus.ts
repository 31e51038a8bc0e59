import type pg from 'pg';
import { isEmbedded, type Db } from '../db';

/**
 * Where cross-process messages go: with PostgreSQL, LISTEN/NOTIFY on the gateway's database,
 * one channel per purpose, suffixed with the schema so that schemas sharing a server (tests) do
 * not hear each other. Embedded PGlite has one process: no bus.
 */
export interface ClusterBus {
  connection: string | pg.ClientConfig;
  /** The NOTIFY channel for a purpose (`pyre_realtime`, `pyre_events`). */
  channel(purpose: string): string;
}

export function clusterBus(db: Db): ClusterBus | undefined {
  if (isEmbedded(db)) return undefined;
  const config = db.client.config as { connection: string | pg.ClientConfig; searchPath?: string[] | string };
  const searchPath = [config.searchPath ?? []].flat()[0];
  const suffix = searchPath ? `_${searchPath}` : '';
  return { connection: config.connection, channel: (purpose) => `${purpose}${suffix}` };
}
