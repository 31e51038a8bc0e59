/**
 * The three client dialects the generator speaks, reduced to what a benchmark needs: build the
 * URL, join topics once open, heartbeat, and classify each incoming frame. Broadcast frames are
 * recognised by their first bytes so the hot path never runs JSON.parse.
 */
export type Proto = 'phoenix' | 'ws' | 'sio';

export interface ClientConn {
  topics: string[];
  joined: number;
  /** Next ref / ack id for this connection. */
  seq: number;
  /** Join refs (phoenix) or ack ids (sio) still awaiting their reply. */
  pendingJoins: Set<string>;
  send(s: string): void;
}

export type Incoming = 'broadcast' | 'joined' | 'join-error' | 'other';

export interface Dialect {
  url(host: string, port: number, token: string | undefined, path: string | undefined): string;
  onOpen(c: ClientConn): void;
  /** Returns what the frame was; may send (e.g. the Socket.IO connect or pong). */
  onFrame(c: ClientConn, data: Buffer): Incoming;
  heartbeat(c: ClientConn): void;
}

const NULLNULL = Buffer.from('[null,null,');

const phoenix: Dialect = {
  url: (host, port, token, path) =>
    `ws://${host}:${port}${path ?? '/socket/websocket'}?vsn=2.0.0${token ? `&token=${encodeURIComponent(token)}` : ''}`,
  onOpen(c) {
    for (const topic of c.topics) {
      const ref = String(++c.seq);
      c.pendingJoins.add(ref);
      c.send(`["${ref}","${ref}",${JSON.stringify(topic)},"phx_join",{}]`);
    }
  },
  onFrame(c, data) {
    if (data.length > NULLNULL.length && data.compare(NULLNULL, 0, NULLNULL.length, 0, NULLNULL.length) === 0)
      return 'broadcast';
    let msg: unknown;
    try {
      msg = JSON.parse(data.toString('utf8'));
    } catch {
      return 'other';
    }
    if (!Array.isArray(msg) || msg[3] !== 'phx_reply')
      return msg && Array.isArray(msg) && msg[0] === null && msg[1] === null ? 'broadcast' : 'other';
    const ref = msg[1] as string;
    if (!c.pendingJoins.has(ref)) return 'other';
    c.pendingJoins.delete(ref);
    return (msg[4] as { status?: string })?.status === 'ok' ? 'joined' : 'join-error';
  },
  heartbeat(c) {
    c.send(`[null,"${++c.seq}","phoenix","heartbeat",{}]`);
  },
};

const bare: Dialect = {
  url: (host, port, token) => `ws://${host}:${port}/${token ? `?token=${encodeURIComponent(token)}` : ''}`,
  onOpen(c) {
    for (const topic of c.topics) c.send(`j:${topic}`);
  },
  onFrame(_c, data) {
    const b = data[0];
    if (b === 0x7b) return 'broadcast'; // '{'
    if (b === 0x6a && data.length === 1) return 'joined'; // 'j'
    return 'other';
  },
  heartbeat(c) {
    c.send('h');
  },
};

const sio: Dialect = {
  url: (host, port, token) =>
    `ws://${host}:${port}/socket.io/?EIO=4&transport=websocket${token ? `&token=${encodeURIComponent(token)}` : ''}`,
  onOpen() {
    // Wait for the Engine.IO open packet ("0{...}") before connecting to the namespace.
  },
  onFrame(c, data) {
    const b0 = data[0];
    if (b0 === 0x34) {
      // '4' = engine message; second char is the socket.io packet type.
      const b1 = data[1];
      if (b1 === 0x32) return 'broadcast'; // 42["msg",...]
      if (b1 === 0x33) {
        // 43<ack>[...]
        let j = 2;
        let id = '';
        while (j < data.length && data[j]! >= 0x30 && data[j]! <= 0x39) id += String.fromCharCode(data[j++]!);
        if (c.pendingJoins.delete(id)) return 'joined';
        return 'other';
      }
      if (b1 === 0x30) {
        // 40{"sid":..} namespace connected: join the rooms
        for (const topic of c.topics) {
          const id = String(++c.seq);
          c.pendingJoins.add(id);
          c.send(`42${id}["join",${JSON.stringify(topic)}]`);
        }
        return 'other';
      }
      if (b1 === 0x34) return 'join-error'; // 44 connect_error
      return 'other';
    }
    if (b0 === 0x30) {
      c.send('40'); // engine open → connect to "/"
      return 'other';
    }
    if (b0 === 0x32) {
      c.send('3'); // ping → pong
      return 'other';
    }
    return 'other';
  },
  heartbeat() {
    // Socket.IO's server pings; the client only answers.
  },
};

export const dialects: Record<Proto, Dialect> = { phoenix, ws: bare, sio };
