import { createHmac, timingSafeEqual } from 'node:crypto';

/** The user every caller is in open mode (no AUTH_SECRET). */
export const OPEN_MODE_USER = 'local';

export interface TokenClaims {
  /** The user id. */
  sub: string;
  /** Issued at, seconds since the epoch. */
  iat: number;
  /** Expires at, seconds since the epoch. */
  exp: number;
}

export class TokenError extends Error {
  constructor(readonly reason: 'missing' | 'malformed' | 'bad_signature' | 'expired') {
    super(`token ${reason.replace('_', ' ')}`);
  }
}

const USER_ID = /^[A-Za-z0-9_.@-]{1,128}$/;
const VERSION = 'pyre1';
const VERIFIED_CACHE_SIZE = 10_000;

function sign(secret: string, body: string): string {
  return createHmac('sha256', secret).update(`${VERSION}.${body}`).digest('base64url');
}

/**
 * Signs and verifies credentials in the spirit of Phoenix.Token: a versioned,
 * HMAC-SHA256-signed, expiring claim naming a user. `pyre1.<claims>.<signature>`,
 * both parts base64url.
 */
export class TokenSigner {
  /** Tokens whose signature already checked out, so a client's every request costs no HMAC. */
  private readonly verified = new Map<string, TokenClaims>();

  constructor(
    private readonly secret: string,
    private readonly maxTtlSeconds = 24 * 3600,
    private readonly now: () => number = () => Date.now(),
  ) {}

  mint(userId: string, ttlSeconds = this.maxTtlSeconds): string {
    if (!USER_ID.test(userId)) throw new Error('user id must be 1-128 characters of A-Z a-z 0-9 _ . @ -');
    if (!Number.isInteger(ttlSeconds) || ttlSeconds < 1)
      throw new Error('ttl must be a positive whole number of seconds');
    if (ttlSeconds > this.maxTtlSeconds) throw new Error(`ttl must be at most ${this.maxTtlSeconds} seconds`);
    const iat = Math.floor(this.now() / 1000);
    const claims: TokenClaims = { sub: userId, iat, exp: iat + ttlSeconds };
    const body = Buffer.from(JSON.stringify(claims)).toString('base64url');
    return `${VERSION}.${body}.${sign(this.secret, body)}`;
  }

  /** The claims of a valid token; throws TokenError otherwise. */
  verify(token: string | undefined | null): TokenClaims {
    if (!token) throw new TokenError('missing');
    const known = this.verified.get(token);
    if (known) {
      if (known.exp * 1000 <= this.now()) {
        this.verified.delete(token);
        throw new TokenError('expired');
      }
      return known;
    }
    const parts = token.split('.');
    if (parts.length !== 3 || parts[0] !== VERSION || !parts[1] || !parts[2]) throw new TokenError('malformed');
    const [, body, sig] = parts as [string, string, string];
    const expected = Buffer.from(sign(this.secret, body));
    const given = Buffer.from(sig);
    if (given.length !== expected.length || !timingSafeEqual(given, expected)) throw new TokenError('bad_signature');
    let claims: TokenClaims;
    try {
      claims = JSON.parse(Buffer.from(body, 'base64url').toString('utf8')) as TokenClaims;
    } catch {
      throw new TokenError('malformed');
    }
    if (typeof claims.sub !== 'string' || !USER_ID.test(claims.sub) || typeof claims.exp !== 'number') {
      throw new TokenError('malformed');
    }
    if (claims.exp * 1000 <= this.now()) throw new TokenError('expired');
    // Only good tokens are remembered, a bounded number, oldest out first.
    if (this.verified.size >= VERIFIED_CACHE_SIZE) this.verified.delete(this.verified.keys().next().value!);
    this.verified.set(token, claims);
    return claims;
  }
}

/**
 * Who a request or socket is: with a signer, the token's user; in open mode,
 * always the local user.
 */
export class Authenticator {
  constructor(readonly signer: TokenSigner | undefined) {}

  get openMode(): boolean {
    return this.signer === undefined;
  }

  /** The user id for a credential; throws TokenError when it is not good. */
  userFor(token: string | undefined | null): string {
    if (!this.signer) return OPEN_MODE_USER;
    return this.signer.verify(token).sub;
  }
}
