import http from 'node:http';
import { spawn } from 'node:child_process';
import readline from 'node:readline';
import path from 'node:path';
import type { AddressInfo } from 'node:net';
import WebSocket from 'ws';
import { BusPubSubAdapter } from '../../src/bus/adapters';
import { RealtimeServer } from '../../src/realtime';
import { testBus, testBusEnv } from '../helpers/bus';
import { freshDb, TEST_PG_URL } from '../helpers/db';
import { call } from '../helpers/gateway';
import { waitFor } from '../channels/helpers';

async function realtimeNode(channel: string) {
  const bus = testBus(channel);
  const rt = new RealtimeServer({ pubsub: new BusPubSubAdapter(bus), checkOrigin: false });
  await bus.start();
  rt.channel('room:*', { join: () => ({ status: 'ok' }) });
  const server = http.createServer();
  rt.attach(server);
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  const port = (server.address() as AddressInfo).port;
  return {
    rt,
    url: `ws://127.0.0.1:${port}/socket/websocket?vsn=2.0.0`,
    close: async () => {
      await rt.close();
      await bus.close();
      await new Promise((r) => server.close(r));
    },
  };
}

(TEST_PG_URL ? describe : describe.skip)('processes sharing PostgreSQL', () => {
  it('a broadcast on one realtime node reaches subscribers of another through the bus (NOTIFY or Redis)', async () => {
    const channel = `pyre_realtime_test_${process.pid}`;
    const a = await realtimeNode(channel);
    const b = await realtimeNode(channel);
    const ws = new WebSocket(a.url);
    const got: unknown[] = [];
    try {
      ws.on('message', (d: Buffer) => got.push(JSON.parse(d.toString())));
      await new Promise((r) => ws.once('open', r));
      ws.send(JSON.stringify(['1', '1', 'room:lobby', 'phx_join', {}]));
      await waitFor('join reply', () => got.length === 1, 5000);
      b.rt.broadcast('room:lobby', 'shout', { body: 'from b' });
      await waitFor('broadcast from the other node', () => got.length === 2, 5000);
      expect(got[1]).toEqual([null, null, 'room:lobby', 'shout', { body: 'from b' }]);
      b.rt.broadcast('room:other', 'shout', { body: 'not for us' });
      b.rt.broadcast('room:lobby', 'shout', { body: 'second' });
      await waitFor('second broadcast', () => got.length === 3, 5000);
      expect(got[2]).toEqual([null, null, 'room:lobby', 'shout', { body: 'second' }]);
    } finally {
      ws.terminate();
      await a.close();
      await b.close();
    }
  });

  it('WORKERS=2 serves one port from two processes that share tasks and events', async () => {
    const tdb = await freshDb('postgres');
    const port = 20000 + Math.floor(Math.random() * 20000);
    const url = new URL(TEST_PG_URL!);
    url.searchParams.set('options', `-c search_path=${tdb.schema}`);
    const child = spawn(process.execPath, ['--import', 'tsx', path.resolve(__dirname, '../../src/main.ts')], {
      env: {
        ...process.env,
        NODE_OPTIONS: '',
        WORKERS: '2',
        PORT: String(port),
        DATABASE_URL: url.toString(),
        LOG_LEVEL: 'info',
        LOG_FORMAT: 'json',
        ...testBusEnv(),
      },
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    let stderr = '';
    child.stderr!.on('data', (d) => (stderr += d));
    const logs: Array<Record<string, any>> = [];
    readline.createInterface({ input: child.stdout! }).on('line', (line) => {
      try {
        logs.push(JSON.parse(line));
      } catch {
        /* not a log line */
      }
    });
    const exited = new Promise((r) => child.once('exit', r));
    const base = `http://127.0.0.1:${port}`;
    try {
      await waitFor(
        `cluster start (${stderr})`,
        async () => (await fetch(`${base}/healthz`).catch(() => null))?.ok,
        90_000,
      );
      const ids: string[] = [];
      for (let i = 0; i < 6; i++) {
        const res = await call(`${base}/api/tasks`, { body: { input_data: { type: 'image', prompt: `c${i}` } } });
        expect(res.status).toBe(202);
        ids.push(res.body.task_id);
      }
      // Sockets land on either worker; every one sees a task run by whichever worker claimed it.
      const received = await Promise.all(
        ids.map(
          (id) =>
            new Promise<number[]>((resolve, reject) => {
              const ws = new WebSocket(`${base.replace('http', 'ws')}/socket/websocket?vsn=2.0.0`);
              const seqs: number[] = [];
              const timer = setTimeout(() => reject(new Error(`no final event for ${id}`)), 60_000);
              ws.on('message', (d: Buffer) => {
                const [, , , event, payload] = JSON.parse(d.toString());
                if (typeof payload?.seq === 'number') seqs.push(payload.seq);
                if (event === 'image_response') {
                  clearTimeout(timer);
                  ws.terminate();
                  resolve(seqs);
                }
              });
              ws.on('open', () => ws.send(JSON.stringify(['1', '1', `task:${id}`, 'phx_join', { last_seq: 0 }])));
              ws.on('error', reject);
            }),
        ),
      );
      for (const seqs of received) expect(seqs).toEqual(seqs.map((_s, i) => i + 1));
      const owners = await tdb.db('tasks').whereIn('id', ids).select('status', 'error');
      if (!owners.every((r: { status: string }) => r.status === 'succeeded')) console.log(JSON.stringify(owners));
      expect(owners.every((r: { status: string }) => r.status === 'succeeded')).toBe(true);
      // Issue 23, item 4: each worker says it is in demo mode and carries its id on every line.
      const listening = logs.filter((l) => /^pyre listening/.test(l.msg));
      expect(listening.map((l) => [l.worker, l.demo_mode]).sort()).toEqual([
        [1, true],
        [2, true],
      ]);
      child.kill('SIGTERM');
      await exited;
      // The primary's last line adds up what the workers released, as a single process's does.
      expect(logs[logs.length - 1]!.msg).toMatch(
        /^stopped: \d+ task\(s\) released to resume later, \d+ socket\(s\) and \d+ long-poll session\(s\) closed \(2 workers\)$/,
      );
      expect(
        logs
          .filter((l) => /^shutting down/.test(l.msg))
          .map((l) => l.worker)
          .sort(),
      ).toEqual([1, 2]);
    } finally {
      child.kill('SIGTERM');
      await exited;
      await tdb.drop();
    }
  }, 150_000);
});
