import type pg from 'pg';
import type { Logger } from '../log';
import { isEmbedded, type Db } from './index';
import { PgNotifyChannel } from './notify';
import { PgClusterBus } from './pg-cluster-bus';
import { PgPubSubAdapter } from './pg-pubsub';

/** What crosses processes about task events: which events to read, not the events (they can be large). */
export type EventRef = [taskId: string, userId: string, fromSeq: number, toSeq: number];

/**
 * The cluster bus: what gateway processes sharing one PostgreSQL tell each other, over two
 * LISTEN/NOTIFY channels. `events` names committed task events (each process reads them from the
 * database); `newWork` wakes the runners; `realtime` carries the realtime layer's broadcasts. With embedded PGlite there is one
 * process and no bus (undefined).
 */
export interface ClusterBus {
  events: PgNotifyChannel<EventRef>;
  /** Tells the other processes' runners that tasks were queued (they claim at once, not at their next poll). */
  newWork: PgNotifyChannel<number>;
  realtime: PgPubSubAdapter;
  /** Node-to-node messages of the realtime layer (long-poll requests forwarded to the session's process). */
  longpoll: PgClusterBus;
  /** The shared database's address: processes that share it can derive a common key from it. */
  connection: string | pg.ClientConfig;
  /** Whether both LISTEN connections are up. */
  listening(): boolean;
}

/**
 * The NOTIFY channel names of a database: `pyre_events`, `pyre_new_work`, `pyre_realtime` and `pyre_bus`, suffixed with the
 * knex search path when there is one, so that processes working in different schemas of one
 * database (the test suites) do not hear each other.
 */
export function busChannelNames(db: Db): { events: string; newWork: string; realtime: string; longpoll: string } {
  const searchPath = [(db.client.config as { searchPath?: string[] | string }).searchPath ?? []].flat()[0];
  const suffix = searchPath ? `_${searchPath.toLowerCase()}` : '';
  return {
    events: `pyre_events${suffix}`,
    newWork: `pyre_new_work${suffix}`,
    realtime: `pyre_realtime${suffix}`,
    longpoll: `pyre_bus${suffix}`,
  };
}

/** The bus of `db`'s PostgreSQL (nothing to start yet), or undefined on embedded PGlite. */
export function openClusterBus(db: Db, nodeId: string, logger: Logger): ClusterBus | undefined {
  if (isEmbedded(db)) return undefined;
  const connection = (db.client.config as { connection: string | pg.ClientConfig }).connection;
  const names = busChannelNames(db);
  const events = new PgNotifyChannel<EventRef>(connection, names.events, nodeId, logger);
  const newWork = new PgNotifyChannel<number>(connection, names.newWork, nodeId, logger);
  const realtime = new PgPubSubAdapter(connection, names.realtime, logger);
  const longpoll = new PgClusterBus(connection, names.longpoll, logger);
  // newWork is a wake-up only (polling is its safety net): readiness does not wait for it.
  return { events, newWork, realtime, longpoll, connection, listening: () => events.listening && realtime.listening };
}
