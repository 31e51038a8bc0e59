import { signWebhook, verifyWebhook, WebhookVerificationError } from '../../src/providers/replicate/webhooks';

// Test vector from replicate-python (reference §D).
const secret = 'whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw';
const id = 'msg_p5jXN8AQM9LWM0D4loKWxJek';
const timestamp = 1614265330;
const body = '{"test": 2432232314}';
const signature = 'v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE=';
const now = timestamp * 1000;
const headers = { 'webhook-id': id, 'webhook-timestamp': String(timestamp), 'webhook-signature': signature };

function reason(fn: () => unknown): string {
  try {
    fn();
  } catch (e) {
    if (e instanceof WebhookVerificationError) return e.reason;
    throw e;
  }
  return 'accepted';
}

describe('verifyWebhook', () => {
  it('signs the test vector exactly', () => {
    expect(signWebhook({ secret, id, timestamp, body })).toBe(signature);
  });

  it('accepts the test vector over the raw bytes', () => {
    expect(verifyWebhook({ secret, headers, rawBody: Buffer.from(body), now })).toEqual({
      id,
      timestamp,
      payload: { test: 2432232314 },
    });
  });

  it('accepts Headers objects and mixed-case keys', () => {
    const h = new Headers(headers);
    expect(verifyWebhook({ secret, headers: h, rawBody: body, now }).id).toBe(id);
    expect(
      verifyWebhook({
        secret,
        headers: { 'Webhook-Id': id, 'Webhook-Timestamp': String(timestamp), 'Webhook-Signature': signature },
        rawBody: body,
        now,
      }).id,
    ).toBe(id);
  });

  it('refuses a re-serialised body, a wrong key and a tampered signature', () => {
    expect(reason(() => verifyWebhook({ secret, headers, rawBody: JSON.stringify(JSON.parse(body)), now }))).toBe(
      'bad_signature',
    );
    expect(
      reason(() =>
        verifyWebhook({
          secret: 'whsec_' + Buffer.from('another key, 24 bytes!!!').toString('base64'),
          headers,
          rawBody: body,
          now,
        }),
      ),
    ).toBe('bad_signature');
    expect(
      reason(() =>
        verifyWebhook({
          secret,
          headers: { ...headers, 'webhook-signature': 'v1,' + 'A'.repeat(44) },
          rawBody: body,
          now,
        }),
      ),
    ).toBe('bad_signature');
    expect(
      reason(() =>
        verifyWebhook({
          secret,
          headers: { ...headers, 'webhook-signature': 'v2,' + signature.slice(3) },
          rawBody: body,
          now,
        }),
      ),
    ).toBe('bad_signature');
  });

  it('accepts any matching entry of several (key rotation)', () => {
    const h = { ...headers, 'webhook-signature': `v1,bm9wZQ== v1a,xyz ${signature}` };
    expect(verifyWebhook({ secret, headers: h, rawBody: body, now }).id).toBe(id);
  });

  it('refuses stale and future timestamps outside the tolerance', () => {
    expect(reason(() => verifyWebhook({ secret, headers, rawBody: body, now: now + 301_000 }))).toBe('stale');
    expect(reason(() => verifyWebhook({ secret, headers, rawBody: body, now: now - 301_000 }))).toBe('future');
    expect(reason(() => verifyWebhook({ secret, headers, rawBody: body, now: now + 299_000 }))).toBe('accepted');
    expect(
      reason(() => verifyWebhook({ secret, headers, rawBody: body, now: now + 3_000_000, toleranceSec: 3600 })),
    ).toBe('accepted');
    expect(
      reason(() =>
        verifyWebhook({ secret, headers: { ...headers, 'webhook-timestamp': 'yesterday' }, rawBody: body, now }),
      ),
    ).toBe('bad_timestamp');
  });

  it('refuses missing headers and an empty body', () => {
    for (const k of Object.keys(headers)) {
      const h: Record<string, string> = { ...headers };
      delete h[k];
      expect(reason(() => verifyWebhook({ secret, headers: h, rawBody: body, now }))).toBe('missing_headers');
    }
    expect(reason(() => verifyWebhook({ secret, headers, rawBody: Buffer.alloc(0), now }))).toBe('empty_body');
  });
});
