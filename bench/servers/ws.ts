/**
 * Reference 1: a bare `ws` server doing the same fan-out with no protocol. Rooms are
 * Map<topic, Set<ws>>; a publish stringifies once and sends the same string to each member
 * (the naive way, one ws.send per socket). Client text frames: "j:<topic>" joins (answered "j"),
 * "h" is a heartbeat (answered "h").
 */
import { WebSocketServer, type WebSocket } from 'ws';
import { startControl } from '../lib/server-control';
import { benchSigner, checkUrlToken } from '../lib/token';

const port = Number(process.env.PORT ?? 4001);
const rooms = new Map<string, Set<WebSocket>>();
const signer = benchSigner();
const wss = new WebSocketServer({
  host: '127.0.0.1',
  port,
  backlog: 4096,
  perMessageDeflate: false,
  clientTracking: true,
  verifyClient: signer
    ? (info: { req: { url?: string } }) => {
        try {
          checkUrlToken(signer, info.req.url);
          return true;
        } catch {
          return false;
        }
      }
    : undefined,
});

wss.on('connection', (ws) => {
  const joined: string[] = [];
  ws.on('message', (data, isBinary) => {
    if (isBinary) return;
    const s = data.toString();
    if (s === 'h') {
      ws.send('h');
    } else if (s.startsWith('j:')) {
      const topic = s.slice(2);
      let room = rooms.get(topic);
      if (!room) rooms.set(topic, (room = new Set()));
      room.add(ws);
      joined.push(topic);
      ws.send('j');
    }
  });
  ws.on('close', () => {
    for (const t of joined) {
      const room = rooms.get(t);
      if (room) {
        room.delete(ws);
        if (room.size === 0) rooms.delete(t);
      }
    }
  });
  ws.on('error', () => {});
});

wss.on('listening', () => {
  startControl(
    {
      publish(topic, event, payload) {
        const room = rooms.get(topic);
        if (!room) return;
        const s = JSON.stringify(payload);
        for (const ws of room) ws.send(s);
      },
      connections: () => wss.clients.size,
    },
    port,
  );
});
