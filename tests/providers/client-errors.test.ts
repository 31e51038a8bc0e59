import { ProviderError } from '../../src/providers/types';
import { ReplicateClient } from '../../src/providers/replicate/client';
import { setup } from './helpers';

async function caught(p: Promise<unknown>): Promise<ProviderError> {
  try {
    await p;
  } catch (e) {
    if (e instanceof ProviderError) return e;
    throw e;
  }
  throw new Error('expected a ProviderError');
}

const imagen = { model: 'google/imagen-4-fast' as const, input: { prompt: 'a fox' } };

describe('429', () => {
  it('waits out Retry-After on a create, then succeeds with one prediction', async () => {
    const waits: number[] = [];
    const { standin, client, close } = await setup(
      {},
      { sleep: (ms) => (waits.push(ms), new Promise((r) => setTimeout(r, ms))) },
    );
    try {
      standin.faults.throttle('create', 1, 1);
      const p = await client.create(imagen);
      expect(p.status).toBe('starting');
      expect(waits).toEqual([1000]);
      expect(standin.creates().map((r) => r.status)).toEqual([429, 201]);
      expect(standin.predictions.size).toBe(1);
    } finally {
      await close();
    }
  });

  it('reads an HTTP-date Retry-After, or the ~Ns in the body when the header is missing', async () => {
    const waits: number[] = [];
    const { standin, client, close } = await setup({}, { sleep: async (ms) => void waits.push(ms) });
    try {
      const { id } = await client.create(imagen);
      standin.faults.throttle('get', 1, 'date');
      standin.faults.throttle('get', 1, 'omit');
      await client.get(id);
      expect(waits).toHaveLength(2);
      expect(waits[0]).toBeGreaterThanOrEqual(0);
      expect(waits[0]).toBeLessThanOrEqual(3000);
      expect(waits[1]).toBe(1000); // "resets in ~1s."
    } finally {
      await close();
    }
  });

  it('gives up with rate_limited and the wait when 429s persist', async () => {
    const { standin, client, close } = await setup(
      {},
      { sleep: async () => undefined, rateLimit: { retries: 2, maxWaitMs: 60_000 } },
    );
    try {
      standin.faults.throttle('create', 10, 30);
      const e = await caught(client.create(imagen));
      expect(e.kind).toBe('rate_limited');
      expect(e.status).toBe(429);
      expect(e.retryAfterMs).toBe(30_000);
      expect(e.detail).toContain('~30s');
      expect(standin.creates()).toHaveLength(3);
      expect(standin.predictions.size).toBe(0);
    } finally {
      await close();
    }
  });

  it('does not wait longer than maxWaitMs itself', async () => {
    const { standin, client, close } = await setup(
      {},
      { sleep: async () => undefined, rateLimit: { retries: 5, maxWaitMs: 10_000 } },
    );
    try {
      standin.faults.throttle('create', 1, 120);
      const e = await caught(client.create(imagen));
      expect(e.kind).toBe('rate_limited');
      expect(e.retryAfterMs).toBe(120_000);
      expect(standin.creates()).toHaveLength(1);
    } finally {
      await close();
    }
  });

  it('throttles by budget (simulated minute) and sends ratelimit headers', async () => {
    const { standin, client, close } = await setup({}, { rateLimit: { retries: 0, maxWaitMs: 0 } });
    try {
      standin.faults.apply({ rateLimits: { createPerMinute: 2, otherPerMinute: 100 } });
      await client.create(imagen);
      await client.create(imagen);
      const e = await caught(client.create(imagen));
      expect(e.kind).toBe('rate_limited');
      expect(e.retryAfterMs).toBe(60_000);
      await standin.advance(60_000, { stepMs: 60_000 });
      await client.create(imagen);
      expect(standin.predictions.size).toBe(3);
    } finally {
      await close();
    }
  });
});

describe('reads retry 5xx and network errors', () => {
  it('survives five 5xx in a row on get', async () => {
    const { standin, client, close } = await setup();
    try {
      const { id } = await client.create(imagen);
      standin.faults.inject({ op: 'get', times: 5, action: { kind: 'status', status: 503 } });
      const p = await client.get(id);
      expect(p.id).toBe(id);
      expect(standin.requests.filter((r) => r.op === 'get').map((r) => r.status)).toEqual([
        503, 503, 503, 503, 503, 200,
      ]);
    } finally {
      await close();
    }
  });

  it('survives dropped connections and a mix of 500/502/504 on cancel', async () => {
    const { standin, client, close } = await setup();
    try {
      const { id } = await client.create(imagen);
      standin.faults.inject({ op: 'cancel', action: { kind: 'drop' } });
      standin.faults.inject({ op: 'cancel', action: { kind: 'status', status: 500 } });
      standin.faults.inject({ op: 'cancel', action: { kind: 'status', status: 502 } });
      standin.faults.inject({ op: 'cancel', action: { kind: 'status', status: 504 } });
      const p = await client.cancel(id);
      expect(p.status).toBe('canceled');
      expect(standin.requests.filter((r) => r.op === 'cancel')).toHaveLength(5);
    } finally {
      await close();
    }
  });

  it('gives up as transient after the policy attempts', async () => {
    const { standin, client, close } = await setup({}, { retry: { attempts: 3, baseMs: 1, maxMs: 2 } });
    try {
      const { id } = await client.create(imagen);
      standin.faults.inject({ op: 'get', times: 10, action: { kind: 'status', status: 500 } });
      const e = await caught(client.get(id));
      expect(e.kind).toBe('transient');
      expect(e.status).toBe(500);
      expect(standin.requests.filter((r) => r.op === 'get')).toHaveLength(3);
    } finally {
      await close();
    }
  });

  it('treats a hung read as a timeout and retries it', async () => {
    const { standin, client, close } = await setup({}, { timeouts: { headersMs: 200 } });
    try {
      const { id } = await client.create(imagen);
      standin.faults.inject({ op: 'get', action: { kind: 'hang' } });
      const p = await client.get(id);
      expect(p.id).toBe(id);
      expect(standin.requests.filter((r) => r.op === 'get').map((r) => r.fault)).toEqual(['hang', null]);
    } finally {
      await close();
    }
  });

  it('treats a body that stalls as a timeout and retries it', async () => {
    const { standin, client, close } = await setup({}, { timeouts: { bodyMs: 150 } });
    try {
      const { id } = await client.create(imagen);
      standin.faults.inject({ op: 'get', action: { kind: 'slow_body', ms: 2000 } });
      expect((await client.get(id)).id).toBe(id);
      expect(standin.requests.filter((r) => r.op === 'get')).toHaveLength(2);
    } finally {
      await close();
    }
  });
});

describe('permanent errors fail at once with the provider message', () => {
  it('422 input validation', async () => {
    const { standin, client, close } = await setup();
    try {
      const e = await caught(
        client.create({ model: 'google/imagen-4-fast', input: { prompt: 'x', aspect_ratio: '2:1' } }),
      );
      expect(e.kind).toBe('permanent');
      expect(e.status).toBe(422);
      expect(e.title).toBe('Input validation failed');
      expect(e.detail).toBe(
        '- input.aspect_ratio: aspect_ratio must be one of the following: "1:1", "9:16", "16:9", "3:4", "4:3"\n',
      );
      expect(e.invalidFields).toEqual([
        { type: 'enum', field: 'input.aspect_ratio', description: expect.stringContaining('must be one of') },
      ]);
      expect(e.message).toContain('Input validation failed');
      expect(standin.creates()).toHaveLength(1);
    } finally {
      await close();
    }
  });

  it('401 bad token', async () => {
    const { standin, close } = await setup();
    const bad = new ReplicateClient({ token: 'r8_wrong', baseUrl: standin.url });
    try {
      const e = await caught(bad.get('abc'));
      expect([e.kind, e.status, e.title, e.detail]).toEqual([
        'permanent',
        401,
        'Unauthenticated',
        'You did not pass a valid authentication token',
      ]);
      expect(standin.requests).toHaveLength(1);
    } finally {
      await bad.close();
      await close();
    }
  });

  it('402 insufficient credit', async () => {
    const { standin, client, close } = await setup();
    try {
      standin.faults.noCredit = true;
      const e = await caught(client.create(imagen));
      expect([e.kind, e.status, e.title]).toEqual(['permanent', 402, 'Insufficient credit']);
      expect(e.detail).toMatch(/^You have insufficient credit to run this model/);
      expect(standin.creates()).toHaveLength(1);
    } finally {
      await close();
    }
  });

  it('404 unknown model and unknown prediction', async () => {
    const { standin, client, close } = await setup();
    try {
      const e = await caught(client.create({ model: 'google/gemini-2.5-flash-lite', input: { prompt: 'x' } }));
      expect([e.kind, e.status, e.title, e.detail]).toEqual([
        'permanent',
        404,
        null,
        'The requested resource could not be found.',
      ]);
      const g = await caught(client.get('nosuchprediction0000000000'));
      expect([g.kind, g.status]).toEqual(['permanent', 404]);
      expect(standin.requests).toHaveLength(2);
    } finally {
      await close();
    }
  });
});

describe('ambiguous creates', () => {
  it('a 5xx after the server created it: ambiguous_create, then findCreated finds it; one prediction', async () => {
    const { standin, client, close } = await setup();
    try {
      const since = new Date(standin.clock.now());
      const req = {
        model: 'openai/gpt-4.1' as const,
        input: { prompt: 'hello', temperature: 0.2 },
        webhook: 'http://127.0.0.1:9/hook?task_id=t1',
      };
      standin.faults.inject({ op: 'create', action: { kind: 'create_then_status', status: 502 } });
      const e = await caught(client.create(req));
      expect(e.kind).toBe('ambiguous_create');
      expect(e.status).toBe(502);
      const found = await client.findCreated(req, since);
      expect(found?.id).toBe(standin.creates()[0]!.predictionId);
      expect(standin.creates()).toHaveLength(1);
      expect(standin.predictions.size).toBe(1);
    } finally {
      await close();
    }
  });

  it('a dropped connection after the create: same, and the webhook task_id tells twins apart', async () => {
    const { standin, client, close } = await setup();
    try {
      const since = new Date(standin.clock.now());
      const input = { prompt: 'same prompt' };
      const other = await client.create({
        model: 'google/imagen-4-fast',
        input,
        webhook: 'http://127.0.0.1:9/hook?task_id=other',
      });
      const req = { model: 'google/imagen-4-fast' as const, input, webhook: 'http://127.0.0.1:9/hook?task_id=mine' };
      standin.faults.inject({ op: 'create', action: { kind: 'create_then_drop' } });
      const e = await caught(client.create(req));
      expect(e.kind).toBe('ambiguous_create');
      expect(e.status).toBeNull();
      const found = await client.findCreated(req, since);
      expect(found).not.toBeNull();
      expect(found!.id).not.toBe(other.id);
      expect(found!.id).toBe(standin.creates()[1]!.predictionId);
      expect(found!.webhook).toBe(req.webhook);
      expect(standin.predictions.size).toBe(2);
    } finally {
      await close();
    }
  });

  it('a 5xx before anything was created: findCreated says null, so creating again is safe', async () => {
    const { standin, client, close } = await setup();
    try {
      const since = new Date(standin.clock.now());
      standin.faults.inject({ op: 'create', action: { kind: 'status', status: 500 } });
      expect((await caught(client.create(imagen))).kind).toBe('ambiguous_create');
      expect(await client.findCreated(imagen, since)).toBeNull();
      await client.create(imagen);
      expect(standin.predictions.size).toBe(1);
    } finally {
      await close();
    }
  });

  it('a hung create times out as ambiguous_create', async () => {
    const { standin, client, close } = await setup({}, { timeouts: { headersMs: 200 } });
    try {
      const since = new Date(standin.clock.now());
      standin.faults.inject({ op: 'create', action: { kind: 'hang' } });
      const e = await caught(client.create(imagen));
      expect(e.kind).toBe('ambiguous_create');
      expect(e.code).toBe('UND_ERR_HEADERS_TIMEOUT');
      expect(standin.creates()).toHaveLength(1); // never repeated by the client
      expect(await client.findCreated(imagen, since)).toBeNull();
    } finally {
      await close();
    }
  });

  it('follows list cursors and skips excluded and older predictions', async () => {
    const { standin, client, close } = await setup({ listPageSize: 2 });
    try {
      const old = await client.create(imagen);
      await new Promise((r) => setTimeout(r, 20)); // created_at is wall time (see the next test)
      const since = new Date();
      const mine = await client.create(imagen);
      for (let i = 0; i < 5; i++)
        await client.create({ model: 'google/imagen-4-fast', input: { prompt: `other ${i}` } });
      const twin = await client.create(imagen);
      expect((await client.findCreated(imagen, since, { clockSkewMs: 0 }))?.id).toBe(mine.id);
      expect((await client.findCreated(imagen, since, { clockSkewMs: 0, excludeIds: [mine.id] }))?.id).toBe(twin.id);
      expect(await client.findCreated(imagen, since, { clockSkewMs: 0, excludeIds: [mine.id, twin.id] })).toBeNull();
      expect(old.id).not.toBe(mine.id);
      const lists = standin.requests.filter((r) => r.op === 'list');
      expect(lists.some((r) => r.path.includes('cursor='))).toBe(true);
    } finally {
      await close();
    }
  });

  it('matches against our wall clock even when the stand-in clock is virtual and far behind or ahead', async () => {
    const { standin, client, close } = await setup();
    try {
      await new Promise((r) => setTimeout(r, 50)); // the virtual clock stood still meanwhile
      const since = new Date();
      standin.faults.inject({ op: 'create', action: { kind: 'create_then_status', status: 503 } });
      await client.create(imagen).catch(() => undefined);
      expect((await client.findCreated(imagen, since, { clockSkewMs: 0 }))?.id).toBe(
        standin.creates()[0]!.predictionId,
      );
      await standin.advance(3_600_000 * 5, { stepMs: 3_600_000 });
      const since2 = new Date();
      standin.faults.inject({ op: 'create', action: { kind: 'create_then_drop' } });
      await client.create(imagen).catch(() => undefined);
      expect((await client.findCreated(imagen, since2, { clockSkewMs: 0 }))?.id).toBe(
        standin.creates()[1]!.predictionId,
      );
    } finally {
      await close();
    }
  });

  it('refused connections on create are safe to repeat, and end as transient', async () => {
    const c = new ReplicateClient({
      token: 't',
      baseUrl: 'http://127.0.0.1:1/v1',
      retry: { attempts: 3, baseMs: 1, maxMs: 2 },
    });
    try {
      const e = await caught(c.create(imagen));
      expect(e.kind).toBe('transient');
      expect(e.code).toBe('ECONNREFUSED');
    } finally {
      await c.close();
    }
  });
});
