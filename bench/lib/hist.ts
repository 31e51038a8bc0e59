/**
 * A log-bucketed latency histogram (about 2% resolution from 1 µs to 1000 s): cheap to record,
 * small to send over IPC and mergeable across generator processes.
 */
const GROWTH = 1.02;
const LOG_G = Math.log(GROWTH);
const BUCKETS = Math.ceil(Math.log(1e9) / LOG_G) + 2;

export interface HistData {
  counts: number[];
  n: number;
  sum: number;
  min: number;
  max: number;
}

export class Hist {
  counts = new Float64Array(BUCKETS);
  n = 0;
  sum = 0;
  min = Infinity;
  max = -Infinity;

  /** Records one latency in milliseconds. */
  record(ms: number): void {
    const us = ms * 1000;
    const i = us <= 1 ? 0 : Math.min(BUCKETS - 1, 1 + Math.floor(Math.log(us) / LOG_G));
    this.counts[i]! += 1;
    this.n += 1;
    this.sum += ms;
    if (ms < this.min) this.min = ms;
    if (ms > this.max) this.max = ms;
  }

  reset(): void {
    this.counts.fill(0);
    this.n = 0;
    this.sum = 0;
    this.min = Infinity;
    this.max = -Infinity;
  }

  toJSON(): HistData {
    return { counts: Array.from(this.counts), n: this.n, sum: this.sum, min: this.min, max: this.max };
  }

  static from(datas: HistData[]): Hist {
    const h = new Hist();
    for (const d of datas) {
      for (let i = 0; i < BUCKETS; i++) h.counts[i]! += d.counts[i] ?? 0;
      h.n += d.n;
      h.sum += d.sum;
      if (d.n > 0) {
        h.min = Math.min(h.min, d.min);
        h.max = Math.max(h.max, d.max);
      }
    }
    return h;
  }

  /** The p-th percentile (0..100) in milliseconds; the bucket's geometric middle, clamped to min/max. */
  percentile(p: number): number {
    if (this.n === 0) return NaN;
    const target = Math.max(1, Math.ceil((p / 100) * this.n));
    let acc = 0;
    for (let i = 0; i < BUCKETS; i++) {
      acc += this.counts[i]!;
      if (acc >= target) {
        const lo = i === 0 ? 0 : Math.pow(GROWTH, i - 1);
        const mid = i === 0 ? 0.5 : lo * Math.sqrt(GROWTH);
        return Math.min(this.max, Math.max(this.min, mid / 1000));
      }
    }
    return this.max;
  }

  mean(): number {
    return this.n === 0 ? NaN : this.sum / this.n;
  }
}
