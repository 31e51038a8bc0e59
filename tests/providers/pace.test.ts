import { ProviderPace } from '../../src/providers/http/pace';

/**
 * The provider pace (src/providers/http/pace.ts) on jest's fake clock: counts of requests let
 * through as simulated time moves, never a real wait.
 */
describe('provider pace', () => {
  beforeEach(() => jest.useFakeTimers({ now: 1_000_000 }));
  afterEach(() => jest.useRealTimers());

  /** Starts `n` takes of `kind`; returns how many have gone through so far, as time moves. */
  const takes = (pace: ProviderPace, kind: 'create' | 'read', n: number, signal?: AbortSignal) => {
    let through = 0;
    const all = Array.from({ length: n }, () =>
      pace.take(kind, signal).then(
        () => void through++,
        () => undefined,
      ),
    );
    return { through: () => through, all };
  };
  const settle = async () => {
    for (let i = 0; i < 5; i++) await Promise.resolve();
  };

  it('lets a tenth of the budget through at once, then spreads the rest: never more than the budget in a minute', async () => {
    const pace = new ProviderPace({ createsPerMinute: 600, readsPerMinute: 3000 });
    const t = takes(pace, 'create', 1000);
    await settle();
    expect(t.through()).toBe(60);
    for (let s = 0; s < 60; s++) {
      await jest.advanceTimersByTimeAsync(1000);
    }
    // 60 at once, then 540 over the minute.
    expect(t.through()).toBeGreaterThanOrEqual(598);
    expect(t.through()).toBeLessThanOrEqual(600);
    // Reads have their own budget: not held back by the waiting creates.
    const r = takes(pace, 'read', 300);
    await settle();
    expect(r.through()).toBe(300);
    expect(pace.stats).toMatchObject({ read: 300 });
  });

  it('a 429 holds back every request of every kind for the time it asked, then no saved-up burst', async () => {
    const pace = new ProviderPace({ createsPerMinute: 600, readsPerMinute: 3000 });
    pace.throttled(2000);
    const c = takes(pace, 'create', 100);
    const r = takes(pace, 'read', 100);
    await jest.advanceTimersByTimeAsync(1990);
    expect([c.through(), r.through()]).toEqual([0, 0]);
    await jest.advanceTimersByTimeAsync(20);
    // The buckets were emptied: after the pause, tokens come at the refill rate only
    // (540/min for creates: about one in 111 ms; 2700/min for reads: one in 22 ms).
    expect(c.through()).toBeLessThanOrEqual(1);
    expect(r.through()).toBeLessThanOrEqual(1);
    await jest.advanceTimersByTimeAsync(1000);
    expect(c.through()).toBeGreaterThanOrEqual(8);
    expect(c.through()).toBeLessThanOrEqual(10);
    expect(r.through()).toBeGreaterThanOrEqual(44);
    expect(r.through()).toBeLessThanOrEqual(47);
    expect(pace.stats.throttled).toBe(1);
  });

  it('a caller that gives up leaves the queue; the next in line takes its turn', async () => {
    const pace = new ProviderPace({ createsPerMinute: 10, readsPerMinute: 3000 });
    const first = takes(pace, 'create', 1);
    await settle();
    expect(first.through()).toBe(1);
    const abort = new AbortController();
    const dropped = takes(pace, 'create', 1, abort.signal);
    const next = takes(pace, 'create', 1);
    abort.abort(new Error('gone'));
    await jest.advanceTimersByTimeAsync(60_000 / 9 + 10);
    expect(dropped.through()).toBe(0);
    expect(next.through()).toBe(1);
    await expect(pace.take('create', abort.signal)).rejects.toThrow('gone');
  });

  it('an urgent request (a cancel) goes ahead of the reads already waiting', async () => {
    const pace = new ProviderPace({ createsPerMinute: 600, readsPerMinute: 600 });
    const polls = takes(pace, 'read', 200);
    await settle();
    expect(polls.through()).toBe(60);
    let canceled = false;
    void pace.take('read', undefined, true).then(() => (canceled = true));
    // The next token (one in 111 ms) is the cancel's, not the 61st poll's.
    await jest.advanceTimersByTimeAsync(120);
    expect([canceled, polls.through()]).toEqual([true, 60]);
  });
});
