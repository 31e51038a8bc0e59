/**
 * The control surface every bench server exposes to the harness over IPC, so one generator and one
 * harness drive pyre and both references the same way: "publish N messages of B bytes to topics T
 * at rate R", "collect garbage", "how many connections".
 */
import { nowMs } from './clock';
import { type Handler, serveRpc } from './ipc';
import { type BenchPayload, makePayload } from './payload';

export interface BenchServer {
  /** Sends one broadcast to every subscriber of `topic` (on this process, or everywhere for pyre). */
  publish(topic: string, event: string, payload: BenchPayload): void;
  connections(): number;
}

export interface PublishArgs {
  /** Explicit topics, or `prefix` + `count` meaning prefix0..prefix{count-1}; broadcasts cycle over them. */
  topics?: string[];
  prefix?: string;
  topicCount?: number;
  /** Number of broadcasts. */
  count: number;
  /** JSON size of each payload. */
  bytes: number;
  /** Broadcasts per second; 0 = as fast as possible, yielding to the event loop after each `batch`. */
  rate: number;
  batch?: number;
  /** Topic of broadcast i is topic (i × stride) mod topicCount (a stride coprime with it visits all in a scattered order). */
  stride?: number;
}

export interface PublishResult {
  published: number;
  startMs: number;
  endMs: number;
}

function topicAt(a: PublishArgs, i: number): string {
  if (a.topics && a.topics.length > 0) return a.topics[i % a.topics.length]!;
  return `${a.prefix ?? 'room:'}${(i * (a.stride ?? 1)) % (a.topicCount ?? 1)}`;
}

/** Runs `args.count` broadcasts; resolves when the last one has been handed to the server. */
export function runPublisher(server: BenchServer, args: PublishArgs): Promise<PublishResult> {
  const startMs = nowMs();
  let published = 0;
  const batch = Math.max(1, args.batch ?? 1);
  return new Promise((resolve, reject) => {
    const step = (): void => {
      try {
        const due =
          args.rate > 0
            ? Math.min(args.count, Math.floor(((nowMs() - startMs) / 1000) * args.rate) + 1)
            : Math.min(args.count, published + batch);
        while (published < due) {
          server.publish(topicAt(args, published), 'msg', makePayload(args.bytes));
          published++;
        }
        if (published >= args.count) {
          resolve({ published, startMs, endMs: nowMs() });
          return;
        }
        if (args.rate > 0) setTimeout(step, 1);
        else setImmediate(step);
      } catch (e) {
        reject(e);
      }
    };
    step();
  });
}

/** Serves the standard commands plus `extra`, then tells the parent it is listening. */
export function startControl(server: BenchServer, port: number, extra: Record<string, Handler> = {}): void {
  serveRpc({
    publish: (a: PublishArgs) => runPublisher(server, a),
    gc: () => {
      const g = (globalThis as { gc?: () => void }).gc;
      if (g) {
        g();
        g();
      }
      return { rss: process.memoryUsage().rss };
    },
    info: () => ({ connections: server.connections(), mem: process.memoryUsage() }),
    exit: () => {
      setTimeout(() => process.exit(0), 10);
      return true;
    },
    ...extra,
  });
  process.send?.({ ready: true, port, pid: process.pid });
}
