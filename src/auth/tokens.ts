import { createHmac, timingSafeEqual } from 'node:crypto';
import { decodeProtectedHeader, errors as jose, jwtVerify } from 'jose';

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

/** Why a token is refused (the 401's detail and the socket log say it in words). */
export type TokenProblem =
  'missing' | 'malformed' | 'bad_signature' | 'expired' | 'unsupported_algorithm' | 'invalid_claims';

export class TokenError extends Error {
  constructor(
    readonly reason: TokenProblem,
    detail?: string,
  ) {
    super(`token ${reason.replace('_', ' ')}${detail ? `: ${detail}` : ''}`);
  }
}

/** Who a good token names, and until when (ms since the epoch; null: never, in open mode). */
export interface Identity {
  userId: string;
  expiresAt: number | null;
}

const USER_ID = /^[A-Za-z0-9_.@-]{1,128}$/;
const USER_ID_RULE = '1-128 characters of A-Z a-z 0-9 _ . @ -';
/** The one JWT algorithm accepted: HMAC-SHA256 with AUTH_SECRET. */
const JWT_ALG = 'HS256';
const VERSION = 'pyre1';
const VERIFIED_CACHE_SIZE = 10_000;

function sign(secret: string, body: string): string {
  return createHmac('sha256', secret).update(`${VERSION}.${body}`).digest('base64url');
}

/**
 * Signs and verifies credentials in the spirit of Phoenix.Token: a versioned,
 * HMAC-SHA256-signed, expiring claim naming a user. `pyre1.<claims>.<signature>`,
 * both parts base64url. It also verifies standard JWTs (HS256, same secret) that other
 * backends mint (docs/contract.md, "Credentials").
 */
export class TokenSigner {
  /** Tokens whose signature already checked out, so a client's every request costs no HMAC. */
  private readonly verified = new Map<string, TokenClaims>();
  private keyBytes: Uint8Array | undefined;

  constructor(
    private readonly secret: string,
    private readonly maxTtlSeconds = 24 * 3600,
    private readonly now: () => number = () => Date.now(),
  ) {}

  mint(userId: string, ttlSeconds = this.maxTtlSeconds): string {
    if (!USER_ID.test(userId)) throw new Error(`user id must be ${USER_ID_RULE}`);
    if (!Number.isInteger(ttlSeconds) || ttlSeconds < 1)
      throw new Error('ttl must be a positive whole number of seconds');
    if (ttlSeconds > this.maxTtlSeconds) throw new Error(`ttl must be at most ${this.maxTtlSeconds} seconds`);
    const iat = Math.floor(this.now() / 1000);
    const claims: TokenClaims = { sub: userId, iat, exp: iat + ttlSeconds };
    const body = Buffer.from(JSON.stringify(claims)).toString('base64url');
    return `${VERSION}.${body}.${sign(this.secret, body)}`;
  }

  /** The claims of a valid `pyre1` token; throws TokenError otherwise. */
  verify(token: string | undefined | null): TokenClaims {
    if (!token) throw new TokenError('missing');
    const known = this.cached(token);
    if (known) return known;
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
    return this.remember(token, claims);
  }

  /**
   * The claims of a valid token of either format: `pyre1.…`, or a standard JWT signed with
   * HS256 and the same secret, with `sub` (the user id) and `exp`. Throws TokenError otherwise.
   */
  async verifyAny(token: string | undefined | null): Promise<TokenClaims> {
    if (!token) throw new TokenError('missing');
    if (token.startsWith(`${VERSION}.`)) return this.verify(token);
    return this.cached(token) ?? this.remember(token, await this.verifyJwt(token));
  }

  /** A standard JWT, checked by `jose`: HS256 only, signature, `exp` required and not passed, `sub` a user id. */
  private async verifyJwt(token: string): Promise<TokenClaims> {
    // Neither `pyre1.…` nor a JWT's header.payload.signature (the CLI and clients say what a token looks like).
    if (token.split('.').length !== 3) throw new TokenError('malformed');
    let alg: unknown;
    try {
      alg = decodeProtectedHeader(token).alg;
    } catch {
      throw new TokenError('malformed', 'the JWT header is not base64url JSON');
    }
    // Checked before the signature, so "alg":"none" or RS256 is told apart from a wrong secret.
    if (alg !== JWT_ALG)
      throw new TokenError(
        'unsupported_algorithm',
        `a JWT must be signed with ${JWT_ALG} (got ${JSON.stringify(alg)})`,
      );
    let payload: Record<string, unknown>;
    try {
      ({ payload } = await jwtVerify(token, this.key, {
        algorithms: [JWT_ALG],
        requiredClaims: ['sub', 'exp'],
        currentDate: new Date(this.now()),
      }));
    } catch (err) {
      throw jwtProblem(err);
    }
    const { sub, exp, iat } = payload;
    if (typeof sub !== 'string' || !USER_ID.test(sub))
      throw new TokenError('invalid_claims', `"sub" must be a user id: ${USER_ID_RULE}`);
    return { sub, exp: exp as number, iat: typeof iat === 'number' ? iat : 0 };
  }

  private get key(): Uint8Array {
    return (this.keyBytes ??= new TextEncoder().encode(this.secret));
  }

  /** A token that verified before and has not expired since (an expired one is forgotten and refused). */
  private cached(token: string): TokenClaims | undefined {
    const known = this.verified.get(token);
    if (known && known.exp * 1000 <= this.now()) {
      this.verified.delete(token);
      throw new TokenError('expired');
    }
    return known;
  }

  /** Only good tokens are remembered, a bounded number, oldest out first. */
  private remember(token: string, claims: TokenClaims): TokenClaims {
    if (this.verified.size >= VERIFIED_CACHE_SIZE) this.verified.delete(this.verified.keys().next().value!);
    this.verified.set(token, claims);
    return claims;
  }
}

/** jose's error for a JWT, as the TokenError a client is told. */
function jwtProblem(err: unknown): TokenError {
  if (err instanceof jose.JWTExpired) return new TokenError('expired');
  if (err instanceof jose.JWSSignatureVerificationFailed) return new TokenError('bad_signature');
  if (err instanceof jose.JOSEAlgNotAllowed)
    return new TokenError('unsupported_algorithm', `a JWT must use ${JWT_ALG}`);
  // A missing or mistyped claim ("exp" required), or one that says "not yet" (nbf).
  if (err instanceof jose.JWTClaimValidationFailed) return new TokenError('invalid_claims', err.message);
  if (err instanceof jose.JOSEError) return new TokenError('malformed', err.message);
  return new TokenError('malformed');
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

  /** Who a credential names and until when; throws TokenError when it is not good. */
  async identify(token: string | undefined | null): Promise<Identity> {
    if (!this.signer) return { userId: OPEN_MODE_USER, expiresAt: null };
    const claims = await this.signer.verifyAny(token);
    return { userId: claims.sub, expiresAt: claims.exp * 1000 };
  }
}
