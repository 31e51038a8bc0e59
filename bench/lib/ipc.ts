/**
 * Request/response over the Node IPC channel between the harness (parent) and its children
 * (servers and generators). Every request carries an id and a timeout, so a stuck child fails
 * the run instead of hanging it.
 */
import type { ChildProcess } from 'node:child_process';

export interface Request {
  rpc: number;
  cmd: string;
  args: unknown;
}

export interface Response {
  rpcReply: number;
  ok: boolean;
  result?: unknown;
  error?: string;
}

export type Handler = (args: any) => unknown | Promise<unknown>;

/** In a child: answers requests from the parent with the given handlers. */
export function serveRpc(handlers: Record<string, Handler>): void {
  if (!process.send) throw new Error('serveRpc: this process has no IPC channel (start it with fork)');
  process.on('message', (m: unknown) => {
    const req = m as Request;
    if (!req || typeof req.rpc !== 'number') return;
    const h = handlers[req.cmd];
    const reply = (r: Response): void => {
      process.send?.(r);
    };
    if (!h) {
      reply({ rpcReply: req.rpc, ok: false, error: `unknown command ${req.cmd}` });
      return;
    }
    Promise.resolve()
      .then(() => h(req.args))
      .then(
        (result) => reply({ rpcReply: req.rpc, ok: true, result }),
        (err: unknown) => reply({ rpcReply: req.rpc, ok: false, error: String((err as Error)?.stack ?? err) }),
      );
  });
  // The parent going away must take every child with it.
  process.on('disconnect', () => process.exit(0));
}

let nextId = 1;

/** In the parent: one RPC client per child. */
export class RpcClient {
  private pending = new Map<
    number,
    { resolve: (v: unknown) => void; reject: (e: Error) => void; timer: NodeJS.Timeout }
  >();

  constructor(
    readonly child: ChildProcess,
    readonly name: string,
  ) {
    child.on('message', (m: unknown) => {
      const r = m as Response;
      if (!r || typeof r.rpcReply !== 'number') return;
      const p = this.pending.get(r.rpcReply);
      if (!p) return;
      this.pending.delete(r.rpcReply);
      clearTimeout(p.timer);
      if (r.ok) p.resolve(r.result);
      else p.reject(new Error(`${name}: ${r.error}`));
    });
    child.on('exit', (code, signal) => {
      for (const [, p] of this.pending) {
        clearTimeout(p.timer);
        p.reject(new Error(`${name} exited (code ${code}, signal ${signal})`));
      }
      this.pending.clear();
    });
  }

  call<T = unknown>(cmd: string, args: unknown = {}, timeoutMs = 60_000): Promise<T> {
    const id = nextId++;
    return new Promise<T>((resolve, reject) => {
      const timer = setTimeout(() => {
        this.pending.delete(id);
        reject(new Error(`${this.name}: ${cmd} timed out after ${timeoutMs} ms`));
      }, timeoutMs);
      this.pending.set(id, { resolve: resolve as (v: unknown) => void, reject, timer });
      this.child.send({ rpc: id, cmd, args } satisfies Request);
    });
  }
}
