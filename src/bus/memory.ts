import type { Transport } from './framed';

/**
 * The bus inside one process, for several gateways in one process (tests, and the suites that
 * run the cluster's logic without PostgreSQL): frames are handed to every node of the hub on a
 * later turn of the event loop, in the order written, as JSON text like the other engines.
 * `disconnect` and `reconnect` play a broker outage: a disconnected node neither sends nor
 * hears, and what was sent meanwhile is lost.
 */
export class MemoryBusHub {
  private readonly nodes = new Set<MemoryTransport>();
  private queue: string[] = [];
  private scheduled = false;

  /** A new node's transport (give it to a FramedBus). */
  transport(): MemoryTransport {
    return new MemoryTransport(this);
  }

  /** Nodes connected now. */
  get size(): number {
    return [...this.nodes].filter((n) => n.connected).length;
  }

  /** Every node stops hearing and sending (a broker outage). */
  disconnectAll(): void {
    for (const n of this.nodes) n.disconnect();
  }

  /** Every node hears again; each runs its reconnect hooks. */
  reconnectAll(): void {
    for (const n of this.nodes) n.reconnect();
  }

  /** @internal */
  join(node: MemoryTransport): void {
    this.nodes.add(node);
  }

  /** @internal */
  leave(node: MemoryTransport): void {
    this.nodes.delete(node);
  }

  /** @internal One queue for the hub: frames reach every node in the order they were written. */
  post(frames: string[]): void {
    this.queue.push(...frames);
    if (this.scheduled) return;
    this.scheduled = true;
    setImmediate(() => {
      this.scheduled = false;
      const frames = this.queue;
      this.queue = [];
      for (const f of frames) for (const n of this.nodes) n.deliver(f);
    });
  }
}

export class MemoryTransport implements Transport {
  readonly engine = 'memory' as const;
  /** Small as NOTIFY's, so that splitting large messages is exercised here too. */
  readonly maxFrameBytes = 7800;
  private up = false;
  private onFrame: ((frame: string) => void) | undefined;
  private onUp: (() => void) | undefined;

  constructor(private readonly hub: MemoryBusHub) {}

  get connected(): boolean {
    return this.up;
  }

  async start(onFrame: (frame: string) => void, onUp: () => void): Promise<void> {
    this.onFrame = onFrame;
    this.onUp = onUp;
    this.hub.join(this);
    this.reconnect();
  }

  disconnect(): void {
    this.up = false;
  }

  reconnect(): void {
    if (this.up) return;
    this.up = true;
    this.onUp?.();
  }

  /** @internal */
  deliver(frame: string): void {
    if (this.up) this.onFrame?.(frame);
  }

  async write(frames: string[]): Promise<void> {
    if (!this.up) throw new Error('the in-memory bus is disconnected');
    this.hub.post(frames);
  }

  async close(): Promise<void> {
    this.up = false;
    this.hub.leave(this);
  }
}
