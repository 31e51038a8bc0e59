/**
 * The subscribers of the streams scenario (i), in their own process: one WebSocket per stream,
 * either a Phoenix v2 client joined to `task:<id>` on a gateway (text_delta events, their seqs,
 * the final `*_response`), or a client of the reference relay (each message is a chunk of text).
 * Every receipt is stamped with Date.now() (the stand-in stamps its emissions with the same
 * clock) and the text's length after it, so the parent can tell which token each delta ends with.
 *
 * RPC: `phoenix {url, token, topics, lastSeq}`, `relay {url, streams}`, `collect` → per stream
 * {at[], end[], text, seqErrors, responseAt}, `reset`.
 */
import WebSocket from 'ws';
import { serveRpc } from './ipc';

interface Received {
  /** Receipt times (Date.now()) of the deltas, and the text's length (UTF-16) after each. */
  at: number[];
  end: number[];
  text: string;
  /** Events whose seq did not follow the one before (a gap or a repeat). */
  seqErrors: number;
  lastSeq: number;
  responseAt: number | null;
  closed: boolean;
}

let streams = new Map<string, Received>();
let sockets: WebSocket[] = [];

const fresh = (lastSeq = 0): Received => ({
  at: [],
  end: [],
  text: '',
  seqErrors: 0,
  lastSeq,
  responseAt: null,
  closed: false,
});

function open(url: string): Promise<WebSocket> {
  return new Promise((resolve, reject) => {
    const ws = new WebSocket(url, { perMessageDeflate: false });
    ws.once('open', () => resolve(ws));
    ws.once('error', reject);
  });
}

/** Runs `fn` over `items`, `n` at a time. */
async function pool<T>(items: T[], n: number, fn: (item: T) => Promise<void>): Promise<void> {
  let next = 0;
  await Promise.all(
    Array.from({ length: Math.min(n, items.length) }, async () => {
      while (next < items.length) await fn(items[next++]!);
    }),
  );
}

/** One socket per topic, each joined with `last_seq` (events after it are replayed, then live ones). */
async function phoenix(a: { url: string; token: string; topics: string[]; lastSeq: number }): Promise<number> {
  let joined = 0;
  await pool(a.topics, 50, async (topic) => {
    const ws = await open(`${a.url}/socket/websocket?vsn=2.0.0&token=${encodeURIComponent(a.token)}`);
    sockets.push(ws);
    const r = fresh(a.lastSeq);
    streams.set(topic, r);
    await new Promise<void>((resolve, reject) => {
      ws.on('message', (raw: Buffer) => {
        const [, ref, , event, payload] = JSON.parse(raw.toString()) as [
          string | null,
          string | null,
          string,
          string,
          { seq?: number; delta?: string; status?: string; response?: unknown },
        ];
        if (event === 'phx_reply' && ref === '1') {
          if (payload.status === 'ok') {
            joined++;
            resolve();
          } else reject(new Error(`join ${topic}: ${JSON.stringify(payload)}`));
          return;
        }
        if (typeof payload?.seq !== 'number') return;
        if (payload.seq !== r.lastSeq + 1) r.seqErrors++;
        r.lastSeq = Math.max(r.lastSeq, payload.seq);
        if (event === 'text_delta') {
          r.text += payload.delta ?? '';
          r.at.push(Date.now());
          r.end.push(r.text.length);
        } else if (event.endsWith('_response')) r.responseAt = Date.now();
      });
      ws.send(JSON.stringify(['1', '1', topic, 'phx_join', { last_seq: a.lastSeq }]));
    });
    const beat = setInterval(() => ws.send(JSON.stringify([null, 'hb', 'phoenix', 'heartbeat', {}])), 25_000);
    ws.on('close', () => clearInterval(beat));
  });
  return joined;
}

/** One socket per stream URL to the reference relay, which forwards each SSE chunk as a message. */
async function relay(a: { url: string; streams: Array<{ key: string; streamUrl: string }> }): Promise<number> {
  await pool(a.streams, 50, async ({ key, streamUrl }) => {
    const r = fresh();
    streams.set(key, r);
    const ws = await open(`${a.url}/?url=${encodeURIComponent(streamUrl)}`);
    sockets.push(ws);
    ws.on('message', (raw: Buffer) => {
      r.text += raw.toString();
      r.at.push(Date.now());
      r.end.push(r.text.length);
    });
    ws.on('close', () => {
      r.closed = true;
      r.responseAt = Date.now();
    });
  });
  return a.streams.length;
}

serveRpc({
  phoenix,
  relay,
  collect: () => Object.fromEntries(streams),
  /** How many streams have their end (a `*_response`, or the relay's close). */
  ended: () => [...streams.values()].filter((r) => r.responseAt !== null).length,
  reset: () => {
    for (const ws of sockets) ws.terminate();
    sockets = [];
    streams = new Map();
    return true;
  },
});
process.send?.({ ready: true });
