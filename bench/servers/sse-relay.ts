/**
 * The reference relay of scenario (i): the floor that durability costs against. A WebSocket
 * client connects with `?url=<SSE stream URL>`; the relay reads that stream with undici and
 * forwards each `output` event's data to the socket as one message, with no database and no
 * protocol around it; at the stream's `done` it closes the socket. Env: PORT.
 */
import { request } from 'undici';
import { WebSocketServer, type WebSocket } from 'ws';

async function forward(url: string, ws: WebSocket): Promise<void> {
  const res = await request(url, { headers: { accept: 'text/event-stream' } });
  let buf = '';
  for await (const chunk of res.body) {
    buf += (chunk as Buffer).toString();
    let cut: number;
    while ((cut = buf.indexOf('\n\n')) >= 0) {
      const block = buf.slice(0, cut);
      buf = buf.slice(cut + 2);
      let event = 'message';
      const data: string[] = [];
      for (const line of block.split('\n')) {
        if (line.startsWith('event: ')) event = line.slice(7);
        else if (line.startsWith('data: ')) data.push(line.slice(6));
      }
      if (event === 'output') ws.send(data.join('\n'));
      else if (event === 'done') {
        ws.close();
        return;
      }
    }
  }
  ws.close();
}

const wss = new WebSocketServer({ port: Number(process.env.PORT ?? 0), host: '127.0.0.1', perMessageDeflate: false });
wss.on('connection', (ws, req) => {
  const url = new URL(req.url ?? '/', 'http://relay').searchParams.get('url');
  if (!url) return ws.close(1008, 'url missing');
  forward(url, ws).catch((err: unknown) => ws.close(1011, String(err).slice(0, 100)));
});
wss.on('listening', () => {
  const addr = wss.address();
  process.send?.({ ready: true, port: addr && typeof addr === 'object' ? addr.port : 0 });
});
process.on('disconnect', () => process.exit(0));
