/**
 * One clock for every bench process: process.hrtime() reads CLOCK_MONOTONIC, which is the same
 * system-wide, so a timestamp taken in a server process can be compared with one taken in a
 * generator process without any offset (performance.timeOrigin differs per process).
 */
export function nowMs(): number {
  const t = process.hrtime();
  return t[0] * 1e3 + t[1] / 1e6;
}

export function sleep(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms));
}
