// @ts-check
// A tiny element builder: h('div', {class: 'x', onclick}, child, 'text', ...).

import { pageNow } from './clock.js';

export function h(tag, attrs = {}, ...children) {
  const el = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (v === undefined || v === null || v === false) continue;
    if (k.startsWith('on') && typeof v === 'function') el.addEventListener(k.slice(2), v);
    else if (k === 'class') el.className = v;
    else if (k === 'dataset') Object.assign(el.dataset, v);
    else if (v === true) el.setAttribute(k, '');
    else el.setAttribute(k, String(v));
  }
  for (const c of children.flat()) {
    if (c === undefined || c === null || c === false) continue;
    el.append(c instanceof Node ? c : document.createTextNode(String(c)));
  }
  return el;
}

export const $ = (sel, root = document) => root.querySelector(sel);

/** "just now", "12 s ago", …: how long before `now` (the gateway's clock: see clock.js) `iso` was. */
export function timeAgo(iso, now = pageNow()) {
  if (!iso) return '';
  const s = Math.max(0, Math.round((now - new Date(iso).getTime()) / 1000));
  if (s < 5) return 'just now';
  if (s < 60) return `${s} s ago`;
  if (s < 3600) return `${Math.floor(s / 60)} min ago`;
  if (s < 86400) return `${Math.floor(s / 3600)} h ago`;
  return new Date(iso).toLocaleDateString();
}

/** A `<time>` that says how long ago it was, kept up to date by refreshTimes. */
export function relativeTime(iso) {
  return h('time', { datetime: iso, title: iso, 'data-relative': '' }, timeAgo(iso));
}

/** Rewrites every relative time under `root` from one reading of the clock (so they agree). */
export function refreshTimes(root) {
  const now = pageNow();
  for (const el of /** @type {HTMLElement[]} */ ([...root.querySelectorAll('time[data-relative]')])) {
    const text = timeAgo(el.getAttribute('datetime'), now);
    if (el.textContent !== text) el.textContent = text;
  }
}

export function clockTime(iso) {
  const d = new Date(iso);
  return `${d.toLocaleTimeString([], { hour12: false })}.${String(d.getMilliseconds()).padStart(3, '0')}`;
}
