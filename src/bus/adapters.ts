import type { BusMessage, ClusterBus, PubSubAdapter, PubSubMessage } from '../realtime';
import type { NewWorkSignal } from '../runner/runner';
import type { Bus } from './bus';

/** The realtime layer's broadcasts (and so presence) across nodes, on the bus's `realtime` topic. */
export class BusPubSubAdapter implements PubSubAdapter {
  constructor(private readonly bus: Bus) {}

  publish(message: PubSubMessage): void {
    this.bus.publish('realtime', message);
  }

  onMessage(handler: (message: PubSubMessage) => void): void {
    this.bus.subscribe('realtime', (m) => handler(m as PubSubMessage));
  }

  /** The bus is closed by its owner (the gateway), after everything that uses it. */
  close(): void {}
}

/** The realtime layer's node-to-node messages (long-poll forwarding and handover), on the `longpoll` topic. */
export class BusNodeLink implements ClusterBus {
  readonly nodeId: string;

  constructor(private readonly bus: Bus) {
    this.nodeId = bus.nodeId;
  }

  send(to: string, message: BusMessage): void {
    if (to === '*') this.bus.publish('longpoll', message);
    else this.bus.send(to, 'longpoll', message);
  }

  onMessage(handler: (message: BusMessage, from: string) => void): void {
    this.bus.subscribe('longpoll', (m, from) => handler(m as BusMessage, from));
  }
}

/** The runners' wake-up across processes, on the `new_work` topic. */
export function newWorkSignal(bus: Bus): NewWorkSignal {
  return {
    send: (msg) => bus.publish('new_work', msg),
    listen: async (handler) => bus.subscribe('new_work', (m) => handler([m as number])),
  };
}
