import { TokenError, TokenSigner } from '../../src/auth/tokens';

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
