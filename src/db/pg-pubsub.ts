import { randomBytes } from 'node:crypto';
import type pg from 'pg';
import type { Logger } from '../log';
import type { PubSubAdapter, PubSubMessage } from '../realtime';
import { PgNotifyChannel } from './notify';

/**
 * The realtime layer's cross-node adapter on PostgreSQL LISTEN/NOTIFY: broadcasts
 * (forced disconnects, application broadcasts) reach the other gateway processes,
 * on this machine or others. Presence stays local to each process for now. A broadcast must encode to under ~7.8 KB
 * to cross (NOTIFY's limit); a larger one is delivered locally and logged.
 * Task events do not travel here: they are read from the database by each process.
 */
export class PgPubSubAdapter implements PubSubAdapter {
  private readonly channel: PgNotifyChannel<PubSubMessage>;
  private handler: ((m: PubSubMessage) => void) | undefined;

  constructor(connection: string | pg.ClientConfig, channelName: string, logger: Logger) {
    this.channel = new PgNotifyChannel(connection, channelName, randomBytes(6).toString('hex'), logger);
  }

  async start(): Promise<void> {
    await this.channel.listen((msgs) => {
      for (const m of msgs) this.handler?.(m);
    });
  }

  publish(message: PubSubMessage): void {
    this.channel.send(message);
  }

  onMessage(handler: (message: PubSubMessage) => void): void {
    this.handler = handler;
  }

  /** Whether its LISTEN connection is up. */
  get listening(): boolean {
    return this.channel.listening;
  }

  close(): Promise<void> {
    return this.channel.close();
  }
}
