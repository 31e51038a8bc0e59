/**
 * The benchmark message: a JSON object carrying the publish time `t` (ms on the shared monotonic
 * clock, see clock.ts) and padding so that its JSON is exactly `bytes` long. Receivers find the
 * timestamp with a byte scan instead of JSON.parse, so the generator stays cheap per message.
 */
import { nowMs } from './clock';

export interface BenchPayload {
  t: number;
  p: string;
}

export function makePayload(bytes: number): BenchPayload {
  const t = Math.round(nowMs() * 1000) / 1000;
  const base = JSON.stringify({ t, p: '' }).length;
  return { t, p: 'x'.repeat(Math.max(0, bytes - base)) };
}

const T0 = 0x22; // "
const KEY = Buffer.from('"t":');

/** Extracts `t` from any frame that contains the payload's JSON; NaN when absent. */
export function extractT(buf: Buffer): number {
  const i = buf.indexOf(KEY);
  if (i < 0) return NaN;
  let j = i + KEY.length;
  let int = 0;
  let frac = 0;
  let scale = 1;
  let c = buf[j]!;
  while (c >= 0x30 && c <= 0x39) {
    int = int * 10 + (c - 0x30);
    c = buf[++j]!;
  }
  if (c === 0x2e) {
    c = buf[++j]!;
    while (c >= 0x30 && c <= 0x39) {
      frac = frac * 10 + (c - 0x30);
      scale *= 10;
      c = buf[++j]!;
    }
  }
  return c === T0 || c === 0x2c || c === 0x7d ? int + frac / scale : NaN;
}
