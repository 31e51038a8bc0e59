import { DEFAULT_POLLING, pollDelayMs } from '../../src/runner/policy';

/** The poll schedule (src/runner/policy.ts): fast at first, a tenth of the age later, capped; webhooks: a sparse safety net. */
describe('pollDelayMs', () => {
  it('polls every second at first, then a tenth of the prediction age, at most every 30 s', () => {
    const at = (s: number) => pollDelayMs(s * 1000, DEFAULT_POLLING, false);
    expect([0, 5, 10, 60, 180, 300, 3600].map(at)).toEqual([1000, 1000, 1000, 6000, 18_000, 30_000, 30_000]);
  });

  it('with webhooks, polls only as a safety net (a delivery ends the wait at once)', () => {
    const at = (s: number) => pollDelayMs(s * 1000, DEFAULT_POLLING, true);
    expect([0, 180, 3600].map(at)).toEqual([60_000, 60_000, 60_000]);
  });

  it('a first interval above the cap wins (a test that wants no polling sets a long one)', () => {
    expect(pollDelayMs(0, { ...DEFAULT_POLLING, pollIntervalMs: 90_000 }, false)).toBe(90_000);
  });
});
