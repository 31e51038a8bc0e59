// The pyre dashboard: sign in, submit, watch tasks live over the Phoenix channels.

import { Socket, LongPoll } from '/vendor/phoenix.mjs';
import { api, ApiError, savedToken, saveToken } from './api.js';
import { $ } from './dom.js';
import { taskForm } from './form.js';
import { taskCard, TERMINAL } from './task-view.js';
import { showTaskPage } from './task-page.js';

const TASK_EVENTS = ['status', 'progress', 'text_delta', 'image_response', 'video_response', 'text_response'];

/** Everything the page knows: the user's tasks by id, and text streamed so far. */
const state = {
  session: null,
  socket: null,
  feed: null,
  tasks: new Map(),
  streamed: new Map(),
  page: null,
};

// ---- sign in ---------------------------------------------------------------------------------

async function start() {
  let session;
  try {
    session = (await api('/api/session')).data;
  } catch (err) {
    if (err instanceof ApiError && err.status === 401) {
      saveToken('');
      return showSignIn('That token is no longer accepted (expired or signed with another secret). Enter a new one.');
    }
    return fatal(err);
  }
  if (session.auth_required && !session.user_id) return showSignIn();
  state.session = session;
  $('#who').textContent = session.open_mode ? `${session.user_id} (open mode)` : session.user_id;
  $('#sign-out').hidden = session.open_mode;
  $('#sign-in').hidden = true;
  await Promise.all([setUpForm(), loadTasks()]);
  connect();
  window.addEventListener('hashchange', route);
  route();
}

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
    showSignIn(err instanceof ApiError && err.status === 401 ? 'This token is not accepted.' : String(err.message));
  }
});

$('#sign-out').addEventListener('click', () => {
  saveToken('');
  location.hash = '#/';
  location.reload();
});

function fatal(err) {
  document.body.append(Object.assign(document.createElement('p'), { className: 'error banner', textContent: `pyre: ${err.message}` }));
}

// ---- realtime --------------------------------------------------------------------------------

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
  const socket = new Socket('/socket', {
    // The token travels in a header (Sec-WebSocket-Protocol, X-Phoenix-AuthToken), not in URLs;
    // a `token` param would also clash with long-poll's own session token.
    ...(token ? { authToken: token } : {}),
    // Where WebSockets are blocked (proxies, networks), phoenix.js falls back to long-poll.
    longPollFallbackMs: 2500,
    ...(forceLongPoll ? { transport: LongPoll } : {}),
    ...(params.has('debug') ? { logger: (kind, msg, data) => console.debug(`phoenix ${kind}: ${msg}`, JSON.stringify(data ?? null)) } : {}),
  });
  state.socket = socket;
  socket.onOpen(() => setConn('open', transportName()));
  socket.onError(() => setConn('error', 'reconnecting…'));
  socket.onClose(() => setConn('offline', 'offline'));
  socket.connect();

  const feed = socket.channel(`tasks:${state.session.user_id}`, {});
  for (const ev of TASK_EVENTS) feed.on(ev, (payload) => onEvent(ev, payload));
  feed.join()
    // Events before a (re)join were not seen here: read the list again.
    .receive('ok', () => loadTasks())
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
          if (!state.tasks.has(data.id)) state.tasks.set(data.id, data);
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
  }
  if (typeof p.seq === 'number' && p.seq <= (task.last_seq ?? 0)) return; // already applied
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
      if (event.endsWith('_response')) {
        if (p.output) task.output = p.output;
        if (p.status === 'success') task.progress = 100;
        if (p.error) task.error = p.error;
      }
  }
}

// ---- the list --------------------------------------------------------------------------------

async function loadTasks() {
  const { data } = await api('/api/tasks?limit=50');
  // Keep what the feed has already brought further than this read.
  const known = state.tasks;
  state.tasks = new Map(data.map((t) => {
    const k = known.get(t.id);
    return [t.id, k && (k.last_seq ?? 0) > (t.last_seq ?? 0) ? k : t];
  }));
  for (const [id, k] of known) if (!state.tasks.has(id)) state.tasks.set(id, k);
  renderList();
  // Text that is streaming now: rebuild what was streamed so far from the event log.
  for (const t of data) {
    if (t.task_type === 'text_gen' && !TERMINAL.has(t.status)) {
      const { data: events } = await api(`/api/tasks/${t.id}/events`);
      state.streamed.set(t.id, events.filter((e) => e.event === 'text_delta').map((e) => e.payload.delta).join(''));
      renderCard(t);
    }
  }
}

function cardFor(task) {
  return taskCard(task, { streamed: state.streamed.get(task.id), onCancel: cancel });
}

function signature(t) {
  return [t.status, t.progress, t.output ? 'out' : '', t.error ? t.error.code : '', (state.streamed.get(t.id) ?? '').length].join('|');
}

function renderList() {
  const list = $('#task-list');
  const tasks = [...state.tasks.values()].sort((a, b) => b.inserted_at.localeCompare(a.inserted_at));
  list.replaceChildren(...tasks.map((t) => {
    const card = cardFor(t);
    card.dataset.sig = signature(t);
    return card;
  }));
  $('#tasks-empty').hidden = tasks.length > 0;
  const running = tasks.filter((t) => !TERMINAL.has(t.status)).length;
  $('#tasks-note').textContent = running ? `${running} running` : '';
}

function renderCard(task) {
  const old = document.querySelector(`#task-list [data-task-id="${task.id}"]`);
  if (!old) return renderList();
  // Redraw only on a visible change (a loaded image or a playing video is kept as it is).
  const sig = signature(task);
  if (old.dataset.sig === sig) return;
  const card = cardFor(task);
  card.dataset.sig = sig;
  old.replaceWith(card);
  const running = [...state.tasks.values()].filter((t) => !TERMINAL.has(t.status)).length;
  $('#tasks-note').textContent = running ? `${running} running` : '';
}

export async function cancel(task) {
  try {
    const { data } = await api(`/api/tasks/${task.id}/cancel`, { method: 'POST' });
    const known = state.tasks.get(task.id);
    if (known && (data.last_seq ?? 0) >= (known.last_seq ?? 0)) Object.assign(known, data);
    if (known) renderCard(known);
  } catch (err) {
    alert(`Could not cancel: ${err.message}`);
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
    } catch (err) {
      if (err instanceof ApiError && err.status === 422) showErrors(err.errors);
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
    state.page = showTaskPage($('#task-page'), m[1], { socket: state.socket, cancel, applyEvent });
    window.scrollTo(0, 0);
  }
}

start();
