import { request } from 'undici';
import { DEMO_RETENTION } from '../../src/providers/replicate/plugin';
import { startStandin, type Standin } from '../../src/providers/replicate/standin';

/** Issue 23, item 11: a stand-in left running (demo mode) holds a bounded amount of memory. */
describe('stand-in retention (demo mode bounds)', () => {
  let standin: Standin;

  afterEach(async () => {
    await standin?.close();
  });

  const create = async (prompt: string): Promise<string> => {
    const res = await request(`${standin.url}/models/google/imagen-4-fast/predictions`, {
      method: 'POST',
      headers: { authorization: `Bearer ${standin.token}`, 'content-type': 'application/json' },
      body: JSON.stringify({ input: { prompt } }),
    });
    expect(res.statusCode).toBe(201);
    return ((await res.body.json()) as { id: string }).id;
  };
  const statusOf = async (id: string) => {
    const res = await request(`${standin.url}/predictions/${id}`, {
      headers: { authorization: `Bearer ${standin.token}` },
    });
    const body = (await res.body.json()) as { status?: string };
    return { code: res.statusCode, status: body.status };
  };

  test('finished predictions are forgotten forgetAfterMs after their end, on the virtual clock; running ones are kept', async () => {
    standin = await startStandin({
      clock: 'virtual',
      preset: 'demo',
      retention: { forgetAfterMs: 60_000, maxRecorded: 1000 },
    });
    const early = await create('first');
    await standin.advance(30_000); // a demo image takes a few seconds: it has ended
    expect(await statusOf(early)).toEqual({ code: 200, status: 'succeeded' });
    const late = await create('second');
    await standin.advance(45_000); // `early` ended ~70 s ago, `late` ~40 s ago
    expect(standin.predictions.has(early)).toBe(false);
    expect((await statusOf(early)).code).toBe(404);
    expect(standin.predictions.has(late)).toBe(true);
    expect(await statusOf(late)).toEqual({ code: 200, status: 'succeeded' });
    await standin.advance(60_000);
    expect(standin.predictions.size).toBe(0);
  });

  test('under steady load the store stays capped: predictions and recorded requests stop growing', async () => {
    standin = await startStandin({
      clock: 'virtual',
      preset: 'demo',
      retention: { forgetAfterMs: 10_000, maxRecorded: 50 },
    });
    const sizes: number[] = [];
    // 3 predictions a (simulated) second for 80 simulated seconds, each polled once.
    for (let second = 0; second < 80; second++) {
      const ids = await Promise.all([1, 2, 3].map((i) => create(`p${second}-${i}`)));
      await Promise.all(ids.map(statusOf));
      await standin.advance(1000);
      sizes.push(standin.predictions.size);
      expect(standin.requests.length).toBeLessThanOrEqual(50 + 10); // trimmed at each sweep
    }
    // What was made in the last forgetAfterMs, plus a demo run's length and a sweep period: far below 240.
    const bound = 3 * (10 + 3 + 2);
    expect(Math.max(...sizes.slice(30))).toBeLessThanOrEqual(bound);
    expect(sizes[79]).toBeGreaterThan(0);
  });

  test('without retention everything is kept (what tests that read the record rely on); demo mode sets one', async () => {
    standin = await startStandin({ clock: 'virtual', preset: 'demo' });
    const id = await create('kept');
    await standin.advance(3_600_000, { stepMs: 60_000 });
    expect(standin.predictions.has(id)).toBe(true);
    expect(DEMO_RETENTION.forgetAfterMs).toBeGreaterThan(0);
    expect(DEMO_RETENTION.maxRecorded).toBeGreaterThan(0);
  });
});
