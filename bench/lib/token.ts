/**
 * Token checks for the connect-rate scenario: every server (pyre and both references) verifies the
 * same pyre token (src/auth/tokens.ts, HMAC-SHA256) from the `token` query parameter, so the
 * comparison carries the same crypto cost. Enabled when BENCH_AUTH_SECRET is set.
 */
import { TokenSigner } from '../../src/auth/tokens';

export const BENCH_SECRET = 'bench-secret-bench-secret-bench-secret-0123456789';

export function benchSigner(): TokenSigner | null {
  const s = process.env.BENCH_AUTH_SECRET;
  return s ? new TokenSigner(s) : null;
}

/** Returns the token's user, or null if this server does not check tokens; throws when invalid. */
export function checkUrlToken(signer: TokenSigner | null, url: string | undefined): string | null {
  if (!signer) return null;
  const q = url?.indexOf('?') ?? -1;
  const token = q >= 0 ? new URLSearchParams(url!.slice(q + 1)).get('token') : null;
  return signer.verify(token).sub;
}
