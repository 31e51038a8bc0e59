// @ts-check
// One clock for the page: the gateway's. Task times come from the gateway (its database), so "how
// long ago" is measured against the gateway's clock, not the browser's, which may be off by minutes.

/** What the gateway's clock says minus what the browser's says, in ms: the range the answers allow. */
let low = -Infinity;
let high = Infinity;

/**
 * Learns from an answer's `Date` header (whole seconds), given when the request was sent and when
 * the answer came, by the browser's clock: the gateway's clock read something in between.
 * @param {string | null} date
 * @param {number} sentAt
 * @param {number} receivedAt
 */
export function noteServerDate(date, sentAt, receivedAt) {
  const server = date ? Date.parse(date) : NaN;
  if (!Number.isFinite(server)) return;
  const lo = server - receivedAt;
  const hi = server + 1000 - sentAt;
  if (lo > high || hi < low) {
    // A clock was set (or jumped) since: start again from this answer.
    low = lo;
    high = hi;
  } else {
    low = Math.max(low, lo);
    high = Math.min(high, hi);
  }
}

/** The time now by the gateway's clock, as well as the answers so far tell it (the browser's, before any). */
export function pageNow() {
  return Date.now() + (Number.isFinite(low) && Number.isFinite(high) ? (low + high) / 2 : 0);
}
