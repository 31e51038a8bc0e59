import { createHmac } from 'node:crypto';
import { LongPoll, Socket } from 'phoenix';
import WebSocket from 'ws';
import { TokenError, TokenSigner } from '../../src/auth/tokens';
import { joinRecording, phoenixSocket } from '../channels/helpers';
import { BACKENDS } from '../helpers/db';
import { call, startGateway, TEST_SECRET, type TestGateway } from '../helpers/gateway';
import { waitFor } from '../helpers/wait';

const SECRET = 'a-test-secret-that-is-long-enough-0123456789';

describe('TokenSigner', () => {
  it('a token that verified once is refused once it expires (the verified-token cache honours exp)', () => {
    let now = Date.parse('2026-01-01T00:00:00Z');
    const signer = new TokenSigner(SECRET, 3600, () => now);
    const token = signer.mint('alice', 60);
    expect(signer.verify(token).sub).toBe('alice');
    expect(signer.verify(token).sub).toBe('alice'); // from the cache
    now += 61_000;
    expect(() => signer.verify(token)).toThrow(new TokenError('expired'));
    expect(() => signer.verify(token)).toThrow(new TokenError('expired'));
  });

  it('a bad token is refused every time, and a good one after it still verifies', () => {
    const signer = new TokenSigner(SECRET);
    const good = signer.mint('bob');
    const [v, body, sig] = good.split('.');
    const forged = `${v}.${Buffer.from(JSON.stringify({ sub: 'mallory', iat: 0, exp: 4e9 })).toString('base64url')}.${sig}`;
    for (let i = 0; i < 3; i++) expect(() => signer.verify(forged)).toThrow(new TokenError('bad_signature'));
    expect(() => signer.verify(`${v}.${body}`)).toThrow(new TokenError('malformed'));
    expect(signer.verify(good).sub).toBe('bob');
  });

  it('keeps a bounded number of tokens and still verifies the ones it dropped', () => {
    const signer = new TokenSigner(SECRET);
    const tokens = Array.from({ length: 10_050 }, (_, i) => signer.mint(`user${i}`));
    for (const t of tokens) signer.verify(t);
    expect((signer as unknown as { verified: Map<string, unknown> }).verified.size).toBe(10_000);
    expect(signer.verify(tokens[0]!).sub).toBe('user0');
  });
});

/** A JWT made by hand with node:crypto, as another backend would (not with the library pyre verifies with). */
function jwt(claims: Record<string, unknown>, opts: { secret?: string; alg?: string; sign?: boolean } = {}): string {
  const alg = opts.alg ?? 'HS256';
  const part = (v: unknown) => Buffer.from(JSON.stringify(v)).toString('base64url');
  const head = `${part({ alg, typ: 'JWT' })}.${part(claims)}`;
  if (alg === 'none') return `${head}.`;
  const hash = { HS256: 'sha256', HS384: 'sha384', HS512: 'sha512' }[alg] ?? 'sha256';
  return `${head}.${createHmac(hash, opts.secret ?? SECRET)
    .update(head)
    .digest('base64url')}`;
}
const nowS = () => Math.floor(Date.now() / 1000);

describe('standard JWTs (HS256, AUTH_SECRET)', () => {
  const signer = new TokenSigner(SECRET);

  it('are accepted with sub and exp, beside pyre1 tokens', async () => {
    const claims = await signer.verifyAny(jwt({ sub: 'carol@example.com', exp: nowS() + 60, aud: 'anything' }));
    expect(claims.sub).toBe('carol@example.com');
    expect((await signer.verifyAny(signer.mint('dave'))).sub).toBe('dave');
  });

  it.each([
    [
      'alg none',
      jwt({ sub: 'eve', exp: nowS() + 60 }, { alg: 'none' }),
      'token unsupported algorithm: a JWT must be signed with HS256 (got "none")',
    ],
    [
      'another HMAC',
      jwt({ sub: 'eve', exp: nowS() + 60 }, { alg: 'HS512' }),
      'token unsupported algorithm: a JWT must be signed with HS256 (got "HS512")',
    ],
    [
      'RS256',
      jwt({ sub: 'eve', exp: nowS() + 60 }, { alg: 'RS256' }),
      'token unsupported algorithm: a JWT must be signed with HS256 (got "RS256")',
    ],
    ['no exp', jwt({ sub: 'eve' }), 'token invalid claims: missing required "exp" claim'],
    ['no sub', jwt({ exp: nowS() + 60 }), 'token invalid claims: missing required "sub" claim'],
    [
      'a sub that is no user id',
      jwt({ sub: 'eve smith', exp: nowS() + 60 }),
      'token invalid claims: "sub" must be a user id',
    ],
    [
      'exp as a string',
      jwt({ sub: 'eve', exp: String(nowS() + 60) }),
      'token invalid claims: "exp" claim must be a number',
    ],
    [
      'not valid yet (nbf)',
      jwt({ sub: 'eve', exp: nowS() + 60, nbf: nowS() + 30 }),
      'token invalid claims: "nbf" claim timestamp check failed',
    ],
    ['expired', jwt({ sub: 'eve', exp: nowS() - 1 }), 'token expired'],
    [
      'another secret',
      jwt({ sub: 'eve', exp: nowS() + 60 }, { secret: 'another-secret-0123456789abcdef0123' }),
      'token bad signature',
    ],
    [
      'a header that is not JSON',
      `bm90LWpzb24.${Buffer.from('{}').toString('base64url')}.c2ln`,
      'token malformed: the JWT header is not base64url JSON',
    ],
  ])('refuses %s, saying why', async (_what, token, message) => {
    const err = await signer.verifyAny(token).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(TokenError);
    expect((err as Error).message).toContain(message);
  });

  it('a JWT that verified once is refused once it expires', async () => {
    let now = Date.now();
    const clocked = new TokenSigner(SECRET, 3600, () => now);
    const token = jwt({ sub: 'frank', exp: Math.floor(now / 1000) + 60 });
    expect((await clocked.verifyAny(token)).sub).toBe('frank');
    now += 61_000;
    await expect(clocked.verifyAny(token)).rejects.toThrow(new TokenError('expired'));
  });
});

describe.each(BACKENDS)('tokens at the gateway on %s', (backend) => {
  let t: TestGateway;
  const signer = new TokenSigner(TEST_SECRET);
  const sockets: Socket[] = [];
  beforeAll(async () => {
    t = await startGateway(backend, { auth: true });
  });
  afterEach(() => {
    for (const s of sockets.splice(0)) s.disconnect();
  });
  afterAll(async () => {
    await t?.close();
  });
  const gwJwt = (claims: Record<string, unknown>, opts: { alg?: string; secret?: string } = {}) =>
    jwt(claims, { secret: TEST_SECRET, ...opts });

  it('REST takes a JWT as the user it names, and refuses bad ones with the reason', async () => {
    const token = gwJwt({ sub: 'grace', exp: nowS() + 60 });
    const created = await call(`${t.url}/api/tasks`, { token, body: { input_data: { type: 'image', prompt: 'hi' } } });
    expect(created.status).toBe(202);
    expect((await t.gw.db('tasks').where({ id: created.body.task_id }).first()).user_id).toBe('grace');
    expect((await call(`${t.url}/api/session`, { token })).body.data).toMatchObject({ user_id: 'grace' });

    const refused = async (bad: string) => {
      const res = await call(`${t.url}/api/tasks`, { token: bad });
      expect(res.status).toBe(401);
      expect(res.headers.get('www-authenticate')).toBe('Bearer');
      return res.body.errors.detail as string;
    };
    expect(await refused(gwJwt({ sub: 'grace', exp: nowS() + 60 }, { alg: 'none' }))).toBe(
      'unauthorized: token unsupported algorithm: a JWT must be signed with HS256 (got "none")',
    );
    expect(await refused(gwJwt({ sub: 'grace' }))).toBe(
      'unauthorized: token invalid claims: missing required "exp" claim',
    );
    expect(await refused(gwJwt({ sub: 'grace', exp: nowS() + 60 }, { secret: SECRET }))).toBe(
      'unauthorized: token bad signature',
    );
    expect(await refused(gwJwt({ sub: 'grace', exp: nowS() - 5 }))).toBe('unauthorized: token expired');
  });

  it('a WebSocket connects with a JWT and is refused (403) with a bad one', async () => {
    const good = gwJwt({ sub: 'heidi', exp: nowS() + 60 });
    const socket = phoenixSocket(t.url, good);
    sockets.push(socket);
    const { joined } = joinRecording(socket, 'tasks:heidi');
    await joined;
    const status = (token: string) =>
      new Promise<number>((resolve, reject) => {
        const ws = new WebSocket(`${t.url.replace(/^http/, 'ws')}/socket/websocket?vsn=2.0.0&token=${token}`);
        ws.on('open', () => {
          ws.close();
          resolve(101);
        });
        ws.on('unexpected-response', (_req, res) => resolve(res.statusCode ?? 0));
        ws.on('error', reject);
      });
    expect(await status(good)).toBe(101);
    expect(await status(gwJwt({ sub: 'heidi', exp: nowS() + 60 }, { alg: 'none' }))).toBe(403);
    expect(await status(gwJwt({ sub: 'heidi' }))).toBe(403);
    expect(await status(gwJwt({ sub: 'heidi', exp: nowS() + 60 }, { secret: SECRET }))).toBe(403);
  });

  it('a socket is closed when its token expires; phoenix.js reconnects with a fresh token from params() and rejoins', async () => {
    const ws = `${t.url.replace(/^http/, 'ws')}/socket`;
    // A raw client sees the close: 1008 "token expired", not before the token's exp.
    const short = signer.mint('ivan', 2);
    const exp = signer.verify(short).exp * 1000;
    const raw = new WebSocket(`${ws}/websocket?vsn=2.0.0&token=${short}`);
    const closed = new Promise<{ code: number; reason: string; at: number }>((resolve) =>
      raw.on('close', (code, reason) => resolve({ code, reason: reason.toString(), at: Date.now() })),
    );

    // phoenix.js, over WebSocket and over long-poll, asking params() for a token on every connect:
    // first a 2-second pyre1 token, then fresh JWTs.
    const clients = [WebSocket as unknown as typeof globalThis.WebSocket, LongPoll].map((transport) => {
      const given: string[] = [];
      const socket = new Socket(ws, {
        transport,
        params: () => {
          given.push(given.length === 0 ? signer.mint('ivan', 2) : gwJwt({ sub: 'ivan', exp: nowS() + 600 }));
          return { token: given[given.length - 1] };
        },
        reconnectAfterMs: () => 50,
        rejoinAfterMs: () => 50,
      } as any);
      sockets.push(socket);
      const closes: number[] = [];
      socket.onClose((e: any) => {
        closes.push(e?.code ?? 0);
      });
      socket.connect();
      let joins = 0;
      const feed = socket.channel('tasks:ivan', {});
      const events: any[] = [];
      feed.on('status', (p) => {
        events.push(p);
      });
      feed.join().receive('ok', () => {
        joins++;
      });
      return { given, closes, events, joins: () => joins };
    });

    const seen = await closed;
    expect(seen).toMatchObject({ code: 1008, reason: 'token expired' });
    expect(seen.at).toBeGreaterThanOrEqual(exp);
    for (const c of clients) {
      await waitFor('a rejoin with a fresh token', () => c.joins() >= 2 && c.given.length >= 2);
      expect(c.closes.length).toBeGreaterThanOrEqual(1);
    }
    // Rejoined: the feed gets the events of a task made now.
    const created = await call(`${t.url}/api/tasks`, {
      token: signer.mint('ivan'),
      body: { input_data: { type: 'image', prompt: 'after the reconnect' } },
    });
    for (const c of clients)
      await waitFor('the new task on the rejoined feed', () =>
        c.events.some((e) => e.task_id === created.body.task_id),
      );
  });
});
