/**
 * Reference 2: Socket.IO 4 with rooms, WebSocket transport only (what Node users pick today).
 * Clients emit "join" with a topic and an ack; a publish is `io.to(topic).emit("msg", payload)`.
 */
import { createServer } from 'node:http';
import { Server } from 'socket.io';
import { startControl } from '../lib/server-control';
import { benchSigner, checkUrlToken } from '../lib/token';

const port = Number(process.env.PORT ?? 4002);
const http = createServer();
const signer = benchSigner();
const io = new Server(http, {
  transports: ['websocket'],
  perMessageDeflate: false,
  httpCompression: false,
  serveClient: false,
  allowRequest: signer
    ? (req, cb) => {
        try {
          checkUrlToken(signer, req.url);
          cb(null, true);
        } catch {
          cb('bad token', false);
        }
      }
    : undefined,
});

io.on('connection', (socket) => {
  socket.on('join', (topic: unknown, ack?: unknown) => {
    if (typeof topic === 'string') void socket.join(topic);
    if (typeof ack === 'function') (ack as (r: string) => void)('ok');
  });
});

http.listen({ host: '127.0.0.1', port, backlog: 4096 }, () => {
  startControl(
    {
      publish(topic, event, payload) {
        io.to(topic).emit(event, payload);
      },
      connections: () => io.engine.clientsCount,
    },
    port,
  );
});
