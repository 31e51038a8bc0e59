// @ts-check
// The pyre dashboard: sign in, submit, watch tasks live over the Phoenix channels.

import { Socket, LongPoll } from '/vendor/phoenix.mjs';
import { api, ApiError, savedToken, saveToken, setUnauthorizedHandler } from './api.js';
import { $, refreshTimes } from './dom.js';
import { taskForm } from './form.js';
import { taskCard, TERMINAL } from './task-view.js';
import { showTaskPage } from './task-page.js';
// Served by the gateway from its task-event contract (src/tasks/events.ts).
import { RESPONSE_EVENTS, TASK_EVENTS, TASK_KINDS } from './events.js';

/** The task types whose output is streamed text (from the kinds' rows). */
const TEXT_TYPES = new Set(TASK_KINDS.filter((k) => k.output === 'text').map((k) => k.taskType));

/** Everything the page knows: the user's tasks by id, and text streamed so far. */
const state = {
  session: null,
  socket: null,
  feed: null,
  tasks: new Map(),
  streamed: new Map(),
  page: null,
  /** `next_cursor` of the oldest page read (null: no older tasks), and whether older pages were read. */
  nextCursor: null,
  olderLoaded: false,
  /** The list's filter: a status and text the prompt contains (empty: all). */
  filter: { status: '', q: '' },
};

/** Set up once per page load, whoever signs in. */
let setUp = false;
/** The task form, built once (from GET /api/models) and kept across sign-ins. */
let formReady = null;

// ---- sign in ---------------------------------------------------------------------------------

/** How long to wait before trying again while the gateway is not reachable. */
const START_RETRY_MS = 1500;

/**
 * Reads the session, the models and the task list, then connects. While the gateway cannot be
 * reached the red banner says so and this tries again; the banner goes once it is back.
 */
async function start() {
  try {
    await startOnce();
    showBanner(null);
  } catch (err) {
    if (err instanceof ApiError && err.unreachable) {
      showBanner(err.message);
      setTimeout(start, START_RETRY_MS);
    } else if (err instanceof ApiError && err.status === 401) {
      showBanner(null);
      saveToken('');
      showSignIn('That token is no longer accepted (expired or signed with another secret). Enter a new one.');
    } else {
      showBanner(err.message); // a bug or an answer the page cannot use: say it, do not retry
    }
  }
}

async function startOnce() {
  const session = (await api('/api/session')).data;
  if (session.auth_required && !session.user_id) return showSignIn();
  if (state.session && state.session.user_id !== session.user_id) {
    // Someone else signed in on this page: nothing of the previous user's stays.
    state.tasks = new Map();
    state.streamed = new Map();
    state.nextCursor = null;
    state.olderLoaded = false;
  }
  state.session = session;
  formReady ??= setUpForm().catch((err) => {
    formReady = null; // built on the next try
    throw err;
  });
  await Promise.all([formReady, loadTasks()]);
  // Shown once the page works for this user (not while it is still trying to reach the gateway).
  $('#who').textContent = session.open_mode ? `${session.user_id} (open mode)` : session.user_id;
  $('#sign-out').hidden = session.open_mode;
  $('#sign-in').hidden = true;
  connect();
  if (!setUp) window.addEventListener('hashchange', route);
  setUp = true;
  route();
}

/** The saved token stopped being accepted: stop everything that uses it, and ask for a new one. */
function expired() {
  if (!state.socket) return; // not signed in (yet): the sign-in form says what is wrong
  saveToken('');
  state.page?.leave();
  state.page = null;
  disconnect();
  // Nobody is signed in any more: the header says so.
  $('#who').textContent = '';
  $('#sign-out').hidden = true;
  // What was typed in the task form stays there for after signing in again.
  showSignIn('your token expired, sign in again');
}
setUnauthorizedHandler(expired);

function showSignIn(message) {
  $('#home').hidden = true;
  $('#task-page').hidden = true;
  $('#sign-in').hidden = false;
  const err = $('#sign-in-error');
  err.hidden = !message;
  err.textContent = message || '';
  $('#token').focus();
}

$('#sign-in-form').addEventListener('submit', async (e) => {
  e.preventDefault();
  const token = $('#token').value.trim();
  try {
    const s = (await api('/api/session', { token })).data;
    if (!s.user_id) throw new ApiError(401, { detail: 'a token is needed' });
    saveToken(token);
    $('#token').value = '';
    await start();
  } catch (err) {
    // The API's reason ("unauthorized: token malformed", "… token expired") says what to fix.
    showSignIn(
      err instanceof ApiError && err.status === 401
        ? `This token is not accepted: ${err.message.replace(/^unauthorized:\s*/, '')}.`
        : String(err.message),
    );
  }
});

$('#sign-out').addEventListener('click', () => {
  saveToken('');
  location.hash = '#/';
  location.reload();
});

/** The red banner at the top of the page: a message, or null to take it away. */
function showBanner(message) {
  let banner = document.getElementById('banner');
  if (!message) return banner?.remove();
  if (!banner) {
    banner = Object.assign(document.createElement('p'), { id: 'banner', className: 'error banner' });
    banner.setAttribute('role', 'alert');
    document.body.append(banner);
  }
  banner.textContent = `pyre: ${message}`;
}

// ---- realtime --------------------------------------------------------------------------------

function disconnect() {
  const socket = state.socket;
  if (!socket) return;
  state.socket = null;
  state.feed = null;
  socket.disconnect();
  for (const ch of [...socket.channels]) ch.leave();
  setConn('offline', 'offline');
}

/**
 * The socket could not connect: the gateway is down, or it refused the token. phoenix.js cannot
 * tell which (a browser hides a refused upgrade's status), so ask the REST API once in a while;
 * a 401 there sends the user to sign in (see expired()).
 */
let lastSessionCheck = 0;
function checkSession() {
  if (Date.now() - lastSessionCheck < 3000) return;
  lastSessionCheck = Date.now();
  const socket = state.socket;
  api('/api/session').then(
    () => {
      if (state.socket === socket && socket?.isConnected()) showBanner(null);
    },
    (err) => {
      // The gateway went away after the page loaded: the red banner says so until the socket is
      // back (onOpen takes it away). A 401 is handled by expired().
      if (err instanceof ApiError && err.unreachable && state.socket === socket) showBanner(err.message);
    },
  );
}

function setConn(stateName, label) {
  $('#conn').dataset.state = stateName;
  $('#conn-label').textContent = label;
}

function transportName() {
  return state.socket.transport === LongPoll ? 'long-poll' : 'WebSocket';
}

function connect() {
  const params = new URLSearchParams(location.search);
  const forceLongPoll = params.get('transport') === 'longpoll';
  const token = savedToken();
  // phoenix.js 1.8 has `transport` and `longPollFallbackMs` on the socket; @types/phoenix 1.6 does not.
  const socket = /** @type {Socket & { transport: unknown, longPollFallbackMs: number }} */ (
    new Socket('/socket', {
      // The token travels in a header (Sec-WebSocket-Protocol, X-Phoenix-AuthToken), not in URLs;
      // a `token` param would also clash with long-poll's own session token.
      ...(token ? { authToken: token } : {}),
      // Where WebSockets are blocked (proxies, networks), phoenix.js falls back to long-poll.
      longPollFallbackMs: 2500,
      ...(forceLongPoll ? { transport: LongPoll } : {}),
      ...(params.has('debug')
        ? { logger: (kind, msg, data) => console.debug(`phoenix ${kind}: ${msg}`, JSON.stringify(data ?? null)) }
        : {}),
    })
  );
  state.socket = socket;
  // Long-poll fallback is for networks that block WebSockets. Once a WebSocket has carried a
  // message on this page, a later failure is an outage, not a blocked network: reconnect over
  // WebSocket (phoenix.js keeps retrying) rather than falling back to long-poll for good.
  let pollFailedBeforeOpen = false;
  socket.onOpen(() => {
    if (state.socket !== socket) return;
    showBanner(null);
    setConn('open', transportName());
    if (socket.transport !== LongPoll) {
      socket.ping(() => {
        socket.longPollFallbackMs = 0;
      });
    } else if (pollFailedBeforeOpen && !forceLongPoll) {
      // Long-poll could not reach the gateway either: the WebSocket failed for an outage, not for
      // being blocked. Try it again (phoenix.js falls back once more if it really is blocked).
      pollFailedBeforeOpen = false;
      try {
        sessionStorage.removeItem('phx:fallback:LongPoll');
      } catch {
        /* storage disabled */
      }
      socket.disconnect(() => {
        if (state.socket !== socket) return;
        socket.transport = window.WebSocket;
        socket.connect();
      });
    }
  });
  socket.onError(() => {
    if (state.socket !== socket) return;
    if (socket.transport === LongPoll) pollFailedBeforeOpen = true;
    setConn('error', 'reconnecting…');
    checkSession();
  });
  socket.onClose((event) => {
    if (state.socket !== socket) return;
    // The gateway closes a socket when its token expires (1008 "token expired"): the token is no
    // good for REST either, so sign in again rather than reconnect with it.
    if (event && event.code === 1008 && event.reason === 'token expired') return expired();
    // An unclean close is followed by phoenix.js's reconnect attempts.
    setConn('error', 'reconnecting…');
    checkSession();
  });
  socket.connect();

  // A rejoin asks for what followed the last event seen (`since`), so a reconnect misses nothing.
  let feedCursor = null;
  const feed = socket.channel(`tasks:${state.session.user_id}`, () => (feedCursor ? { since: feedCursor } : {}));
  for (const ev of TASK_EVENTS)
    feed.on(ev, (payload) => {
      if (payload.cursor) feedCursor = payload.cursor;
      onEvent(ev, payload);
    });
  feed
    .join()
    // Events before a (re)join were not seen here: read the list again.
    .receive('ok', () =>
      loadTasks().catch(() => {
        /* unreachable: the next rejoin reads it */
      }),
    )
    .receive('error', (r) => setConn('error', `feed refused: ${r.reason ?? 'error'}`));
  state.feed = feed;
}

/** One event from the feed: apply it to the task it names. */
const fetching = new Map();
async function onEvent(event, p) {
  let task = state.tasks.get(p.task_id);
  if (!task) {
    // A task made elsewhere (another tab, the CLI), or not yet answered: fetch it once.
    let f = fetching.get(p.task_id);
    if (!f) {
      f = api(`/api/tasks/${p.task_id}`)
        .then(({ data }) => {
          // A task older than the loaded page waits for "Load older tasks", like the rest of its page.
          if (!state.tasks.has(data.id)) {
            if (!inLoadedWindow(data)) return undefined;
            state.tasks.set(data.id, data);
          }
          renderList();
          return state.tasks.get(data.id);
        })
        .finally(() => fetching.delete(p.task_id));
      fetching.set(p.task_id, f);
    }
    try {
      task = await f;
    } catch {
      return;
    }
    if (!task) return;
  }
  if (typeof p.seq === 'number' && p.seq <= (task.last_seq ?? 0)) return; // already applied
  if (typeof p.seq === 'number' && p.seq > (task.last_seq ?? 0) + 1) {
    // A gap: events of this task were missed (a reconnect); read them from its log, in order.
    try {
      const { data } = await api(`/api/tasks/${task.id}/events?after_seq=${task.last_seq ?? 0}`);
      for (const e of data) if (e.seq > (task.last_seq ?? 0)) applyEvent(task, e.event, e.payload, state.streamed);
    } catch {
      /* the next event finds the gap again */
    }
    if (p.seq <= (task.last_seq ?? 0)) return renderCard(task);
  }
  applyEvent(task, event, p, state.streamed);
  renderCard(task);
}

export function applyEvent(task, event, p, streamed) {
  task.last_seq = p.seq ?? task.last_seq;
  switch (event) {
    case 'status':
      task.status = p.status;
      if (p.progress !== undefined) task.progress = p.progress;
      task.error = p.error ?? null;
      break;
    case 'progress':
      task.progress = p.progress;
      break;
    case 'text_delta':
      streamed.set(task.id, (streamed.get(task.id) ?? '') + (p.delta ?? ''));
      break;
    default:
      if (RESPONSE_EVENTS.includes(event)) {
        if (p.output) task.output = p.output;
        if (p.status === 'success') task.progress = 100;
        if (p.error) task.error = p.error;
      }
  }
}

// ---- the list --------------------------------------------------------------------------------

const PAGE = 50;

/** Streamed text is rebuilt from the log for a text task still running, or one that failed or was canceled midway. */
function needsStreamedText(t) {
  return TEXT_TYPES.has(t.task_type) && t.status !== 'succeeded' && !(t.output && typeof t.output.text === 'string');
}

async function rebuildStreamed(tasks) {
  for (const t of tasks) {
    if (!needsStreamedText(t)) continue;
    if (TERMINAL.has(t.status) && state.streamed.has(t.id)) continue; // ended: what was streamed is final
    const { data: events } = await api(`/api/tasks/${t.id}/events`);
    state.streamed.set(
      t.id,
      events
        .filter((e) => e.event === 'text_delta')
        .map((e) => e.payload.delta)
        .join(''),
    );
    renderCard(state.tasks.get(t.id) ?? t);
  }
}

/** `?limit=…&status=…&q=…`: the list's query for the filter shown. */
function listQuery(extra = {}) {
  const params = new URLSearchParams({ limit: String(PAGE), ...extra });
  if (state.filter.status) params.set('status', state.filter.status);
  if (state.filter.q) params.set('q', state.filter.q);
  return `/api/tasks?${params}`;
}

/** Whether a task is one the filter shows (the API applies it to what it reads; this, to live changes). */
function matchesFilter(t) {
  const { status, q } = state.filter;
  if (status && t.status !== status) return false;
  return (
    !q ||
    String(t.input_data?.prompt ?? '')
      .toLowerCase()
      .includes(q.toLowerCase())
  );
}

/** Bumped when the filter changes: an answer for an older filter is dropped. */
let listGeneration = 0;

async function loadTasks() {
  const generation = listGeneration;
  const { data, next_cursor: next } = await api(listQuery());
  if (generation !== listGeneration) return;
  // After older pages were read, the oldest one's cursor is the one to follow.
  if (!state.olderLoaded) state.nextCursor = next;
  // Keep what the feed has already brought further than this read.
  const known = state.tasks;
  state.tasks = new Map(
    data.map((t) => {
      const k = known.get(t.id);
      return [t.id, k && (k.last_seq ?? 0) > (t.last_seq ?? 0) ? k : t];
    }),
  );
  for (const [id, k] of known)
    if (!state.tasks.has(id) && (state.olderLoaded || inLoadedWindow(k))) state.tasks.set(id, k);
  renderList();
  // Text streaming now, or cut short by a failure: rebuild what was streamed from the event log.
  await rebuildStreamed(data);
}

/** Whether a task belongs to the part of the list that is loaded (newer than its oldest task, or all are loaded). */
function inLoadedWindow(t) {
  if (!state.nextCursor) return true;
  let oldest = null;
  for (const k of state.tasks.values()) if (oldest === null || k.inserted_at < oldest) oldest = k.inserted_at;
  return oldest === null || t.inserted_at >= oldest;
}

async function loadOlder() {
  const button = $('#load-older');
  if (!state.nextCursor) return;
  button.disabled = true;
  const generation = listGeneration;
  try {
    const { data, next_cursor: next } = await api(listQuery({ cursor: state.nextCursor }));
    if (generation !== listGeneration) return;
    state.olderLoaded = true;
    state.nextCursor = next;
    for (const t of data) if (!state.tasks.has(t.id)) state.tasks.set(t.id, t);
    $('#older-error').hidden = true;
    renderList();
    await rebuildStreamed(data);
  } catch (err) {
    $('#older-error').textContent = `Could not load older tasks: ${err.message}`;
    $('#older-error').hidden = false;
  } finally {
    button.disabled = false;
  }
}
$('#load-older').addEventListener('click', loadOlder);

/** A new filter: the list is read again with it (from the newest task). */
function applyFilter() {
  const status = /** @type {HTMLSelectElement} */ ($('#filter-status')).value;
  const q = /** @type {HTMLInputElement} */ ($('#filter-q')).value.trim();
  if (status === state.filter.status && q === state.filter.q) return;
  state.filter = { status, q };
  listGeneration++;
  state.tasks = new Map();
  state.nextCursor = null;
  state.olderLoaded = false;
  $('#older-error').hidden = true;
  renderList();
  if (!state.session) return;
  loadTasks().catch((err) => {
    $('#older-error').textContent = `Could not load the tasks: ${err.message}`;
    $('#older-error').hidden = false;
  });
}
let filterTimer;
$('#filter-status').addEventListener('change', applyFilter);
$('#filter-q').addEventListener('input', () => {
  // Read once the user pauses typing, not on every key.
  clearTimeout(filterTimer);
  filterTimer = setTimeout(applyFilter, 250);
});
$('#filter-form').addEventListener('submit', (e) => {
  e.preventDefault();
  clearTimeout(filterTimer);
  applyFilter();
});

/** "2 running · 1 queued": tasks being generated, and tasks waiting for their turn, counted apart. */
function renderNote() {
  let running = 0;
  let queued = 0;
  for (const t of state.tasks.values()) {
    if (t.status === 'queued') queued++;
    else if (!TERMINAL.has(t.status)) running++;
  }
  $('#tasks-note').textContent = [running ? `${running} running` : '', queued ? `${queued} queued` : '']
    .filter(Boolean)
    .join(' · ');
}

/** What went wrong with the last Cancel or Retry of a task, shown in its card (and page) until the next try. */
const actionErrors = new Map();

function cardFor(task) {
  return taskCard(task, {
    streamed: state.streamed.get(task.id),
    onCancel: cancel,
    onRetry: retry,
    actionError: actionErrors.get(task.id),
  });
}

function signature(t) {
  return [
    t.status,
    t.progress,
    t.output ? 'out' : '',
    t.error ? t.error.code : '',
    (state.streamed.get(t.id) ?? '').length,
    actionErrors.get(t.id) ?? '',
  ].join('|');
}

/**
 * Puts the cards in order, newest first, updating them in place: a card whose task did not change
 * is the same element as before (an image stays loaded, a video keeps playing), a new task's card
 * is inserted where it belongs, and nothing else moves.
 */
function renderList() {
  const list = $('#task-list');
  const tasks = [...state.tasks.values()]
    .filter(matchesFilter)
    .sort((a, b) => b.inserted_at.localeCompare(a.inserted_at));
  const existing = new Map();
  for (const el of /** @type {HTMLElement[]} */ ([...list.children])) existing.set(el.dataset.taskId, el);
  let next = list.firstElementChild;
  for (const t of tasks) {
    let card = existing.get(t.id);
    existing.delete(t.id);
    const sig = signature(t);
    if (!card || card.dataset.sig !== sig) {
      const fresh = cardFor(t);
      fresh.dataset.sig = sig;
      card?.replaceWith(fresh);
      if (card === next) next = fresh;
      card = fresh;
    }
    if (card === next) next = card.nextElementSibling;
    else list.insertBefore(card, next);
  }
  for (const gone of existing.values()) gone.remove();
  const filtered = Boolean(state.filter.status || state.filter.q);
  $('#tasks-empty').hidden = tasks.length > 0 || filtered;
  $('#tasks-none-match').hidden = tasks.length > 0 || !filtered;
  refreshTimes(list);
  $('#load-older').hidden = !state.nextCursor;
  renderNote();
}

function renderCard(task) {
  const old = /** @type {HTMLElement | null} */ (document.querySelector(`#task-list [data-task-id="${task.id}"]`));
  if (!old || !matchesFilter(task)) return renderList();
  // Redraw only on a visible change (a loaded image or a playing video is kept as it is).
  const sig = signature(task);
  if (old.dataset.sig === sig) return;
  const card = cardFor(task);
  card.dataset.sig = sig;
  old.replaceWith(card);
  refreshTimes(card);
  renderNote();
}

/** Shows (or clears, with null) what went wrong with a Cancel or Retry, in the task's card. */
function setActionError(taskId, message) {
  if (message) actionErrors.set(taskId, message);
  else actionErrors.delete(taskId);
  const known = state.tasks.get(taskId);
  if (known) renderCard(known);
}

/** Cancels a task; resolves to what went wrong (shown in its card), or null. */
export async function cancel(task) {
  try {
    const { data } = await api(`/api/tasks/${task.id}/cancel`, { method: 'POST' });
    const known = state.tasks.get(task.id);
    if (known && (data.last_seq ?? 0) >= (known.last_seq ?? 0)) Object.assign(known, data);
    setActionError(task.id, null);
    return null;
  } catch (err) {
    if (err instanceof ApiError && err.status === 401) return null; // back at sign-in: expired()
    const message = `Could not cancel: ${err.message}`;
    setActionError(task.id, message);
    return message;
  }
}

/**
 * Submits a new task with a failed or canceled one's input (with `prompt`, the prompt changed);
 * resolves to the new task, or null (what went wrong is in the card).
 */
export async function retry(task, prompt) {
  const input = prompt === undefined ? task.input_data : { ...task.input_data, prompt };
  try {
    const { data } = await api('/api/tasks', { method: 'POST', body: { input_data: input } });
    setActionError(task.id, null);
    if (!state.tasks.has(data.id)) state.tasks.set(data.id, data);
    renderList();
    return data;
  } catch (err) {
    if (!(err instanceof ApiError && err.status === 401)) setActionError(task.id, `Could not retry: ${err.message}`);
    return null;
  }
}

// ---- the form --------------------------------------------------------------------------------

async function setUpForm() {
  const { data: models } = await api('/api/models');
  const form = $('#task-form');
  const { showErrors } = taskForm(form, models, async (body) => {
    try {
      const { data } = await api('/api/tasks', { method: 'POST', body });
      if (!state.tasks.has(data.id)) state.tasks.set(data.id, data);
      renderList();
      $('#prompt').value = '';
      $('#prompt-count').textContent = '0';
      $('#prompt-cut').hidden = true;
    } catch (err) {
      if (err instanceof ApiError && err.status === 422) showErrors(err.errors);
      else if (err instanceof ApiError && err.status === 401) {
        /* back at sign-in: expired() */
      } else if (err instanceof ApiError && err.unreachable)
        showErrors({ detail: `${err.message}. Nothing was submitted: Generate again once the connection is back.` });
      else showErrors({ detail: err.message });
    }
  });
}

// ---- routing ---------------------------------------------------------------------------------

function route() {
  state.page?.leave();
  state.page = null;
  const m = /^#\/tasks\/([0-9a-f-]{36})$/i.exec(location.hash);
  $('#home').hidden = Boolean(m);
  $('#task-page').hidden = !m;
  if (m) {
    state.page = showTaskPage($('#task-page'), m[1], {
      socket: state.socket,
      cancel,
      retry: async (task, prompt) => {
        const created = await retry(task, prompt);
        if (created) location.hash = `#/tasks/${created.id}`;
        return created ? null : (actionErrors.get(task.id) ?? null);
      },
      applyEvent,
    });
    window.scrollTo(0, 0);
  }
}

// Every relative time on the page, from one clock, every second (see refreshTimes).
setInterval(() => refreshTimes(document), 1000);

start();
