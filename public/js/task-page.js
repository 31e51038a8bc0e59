// @ts-check
// A task's own page: what it is, its result, and its full event timeline (stored + live).

import { api, ApiError } from './api.js';
import { h, clockTime } from './dom.js';
import { actionErrorView, errorView, outputView, progressBar, statusPill, taskButtons, TERMINAL } from './task-view.js';
// Served by the gateway from its task-event contract (src/tasks/events.ts).
import { TASK_EVENTS } from './events.js';

/** What an event says, in a few words. */
function summary(event, p) {
  switch (event) {
    case 'status':
      return [
        p.status,
        p.progress !== null && p.progress !== undefined ? `${p.progress}%` : null,
        p.error ? `${p.error.code}: ${p.error.message}` : null,
      ]
        .filter(Boolean)
        .join(' · ');
    case 'progress':
      return `${p.progress}%${p.message ? ` · ${p.message}` : ''}`;
    case 'text_delta':
      return JSON.stringify(p.delta);
    default: {
      const out = p.output
        ? p.output.urls
          ? p.output.urls.join(' ')
          : `${String(p.output.text ?? '').length} characters of text`
        : '';
      return [p.status, out, p.error ? `${p.error.code}: ${p.error.message}` : null].filter(Boolean).join(' · ');
    }
  }
}

export function showTaskPage(root, taskId, { socket, cancel, retry, applyEvent }) {
  let task = null;
  let lastSeq = 0;
  /** Events in the timeline (rows group consecutive text deltas, so there are fewer rows). */
  let eventCount = 0;
  /** The last row, while it is a run of text_delta events that more deltas extend. */
  let deltaRun = null;
  /** What went wrong with the last Cancel or Retry clicked here. */
  let actionError = null;
  const act =
    (fn) =>
    async (t, ...more) => {
      actionError = await fn(t, ...more);
      renderTop();
    };
  let channel = null;
  let left = false;
  const streamed = new Map();
  const rows = h('tbody');
  const top = h('div');
  const note = h('p', { class: 'muted small', 'data-role': 'timeline-note' });
  // Shown once the task is known to exist (an unknown id gets only the not-found message).
  const timeline = h(
    'section',
    { class: 'card timeline-card', hidden: true },
    h('div', { class: 'section-head' }, h('h2', {}, 'Event timeline'), note),
    h(
      'p',
      { class: 'muted small' },
      'Every event of this task in seq order: the stored log, then live events from ',
      h('code', {}, `task:${taskId}`),
      '. Each must name this task, with seq rising by one.',
    ),
    h(
      'div',
      { class: 'table-wrap' },
      h(
        'table',
        { class: 'timeline' },
        h(
          'thead',
          {},
          h(
            'tr',
            {},
            h('th', {}, 'seq'),
            h('th', {}, 'time'),
            h('th', {}, 'event'),
            h('th', {}, 'details'),
            h('th', {}, 'check'),
          ),
        ),
        rows,
      ),
    ),
  );
  root.replaceChildren(h('a', { href: '#/', class: 'back' }, '← All tasks'), top, timeline);

  function renderTop() {
    if (!task) return;
    const input = Object.entries(task.input_data ?? {}).filter(
      ([k]) => k !== 'prompt' && k !== 'type' && k !== 'model',
    );
    top.replaceChildren(
      h(
        'section',
        { class: 'card task-page', dataset: { taskId: task.id, status: task.status } },
        h(
          'div',
          { class: 'task-head' },
          statusPill(task.status),
          h('span', { class: 'model' }, task.model),
          taskButtons(task, { onCancel: act(cancel), onRetry: act(retry), className: '' }),
        ),
        h('h1', { class: 'prompt-full' }, task.input_data?.prompt ?? ''),
        progressBar(task),
        outputView(task, streamed.get(task.id)),
        errorView(task),
        actionErrorView(actionError),
        h(
          'dl',
          { class: 'facts' },
          h('dt', {}, 'id'),
          h('dd', {}, h('code', {}, task.id)),
          h('dt', {}, 'type'),
          h('dd', {}, task.task_type),
          h('dt', {}, 'attempts'),
          h('dd', {}, String(task.attempts)),
          h('dt', {}, 'created'),
          h('dd', {}, new Date(task.inserted_at).toLocaleString()),
          task.started_at ? [h('dt', {}, 'started'), h('dd', {}, new Date(task.started_at).toLocaleString())] : null,
          task.completed_at
            ? [h('dt', {}, 'completed'), h('dd', {}, new Date(task.completed_at).toLocaleString())]
            : null,
          input.length
            ? [
                h('dt', {}, 'parameters'),
                h(
                  'dd',
                  {},
                  input.map(([k, v]) => h('span', { class: 'param-chip' }, `${k}=${JSON.stringify(v)}`)),
                ),
              ]
            : null,
        ),
      ),
    );
  }

  /**
   * Adds an event to the timeline, flagging a foreign task id, a gap or a repeat. Consecutive
   * text deltas share one row (a text task streams hundreds): its seq range, their count, the text.
   */
  function addRow(e, live) {
    const p = e.payload ?? {};
    const problems = [];
    if (p.task_id !== taskId) problems.push(`names task ${p.task_id}`);
    if (e.seq !== lastSeq + 1)
      problems.push(e.seq <= lastSeq ? `repeat (had ${lastSeq})` : `gap (expected ${lastSeq + 1})`);
    lastSeq = Math.max(lastSeq, e.seq);
    eventCount++;
    note.textContent = `${eventCount} events`;
    const delta = e.event === 'text_delta' && problems.length === 0;
    if (delta && deltaRun) return extendRun(deltaRun, e, p, live);
    const cells = {
      seq: h('td', { class: 'num' }, String(e.seq)),
      event: h('span', { class: `ev ${e.event}` }, e.event),
      kind: h('td', {}),
      details: h('td', { class: 'details' }, summary(e.event, p)),
    };
    cells.kind.append(cells.event);
    if (live) cells.kind.append(liveTag());
    const tr = h(
      'tr',
      { class: problems.length ? 'bad' : '', dataset: { seq: e.seq, event: e.event } },
      cells.seq,
      h('td', { class: 'time' }, clockTime(e.inserted_at ?? new Date().toISOString())),
      cells.kind,
      cells.details,
      h('td', { class: problems.length ? 'check bad' : 'check ok' }, problems.length ? problems.join('; ') : '✓'),
    );
    rows.append(tr);
    deltaRun = delta ? { tr, cells, first: e.seq, count: 1, text: p.delta ?? '', live } : null;
  }

  /** One more text delta on the row of the deltas just before it. */
  function extendRun(run, e, p, live) {
    run.count++;
    run.text += p.delta ?? '';
    run.tr.dataset.seqLast = String(e.seq);
    run.tr.dataset.count = String(run.count);
    run.cells.seq.textContent = `${run.first}–${e.seq}`;
    run.cells.event.textContent = `text_delta ×${run.count}`;
    run.cells.details.textContent = JSON.stringify(run.text);
    if (live && !run.live) run.cells.kind.append(liveTag());
    run.live = run.live || live;
  }

  function liveTag() {
    return h('span', { class: 'live-tag' }, 'live');
  }

  /** Reads the task again (the events do not carry everything, e.g. completed_at), keeping newer live state. */
  async function refresh() {
    try {
      const { data } = await api(`/api/tasks/${taskId}`);
      if (left || !task) return;
      if ((data.last_seq ?? 0) >= (task.last_seq ?? 0)) task = data;
      else task.completed_at = task.completed_at ?? data.completed_at;
      renderTop();
    } catch {
      /* the page already shows what the events said */
    }
  }

  function onLive(event, p) {
    if (typeof p.seq === 'number' && p.seq <= lastSeq && p.task_id === taskId) return;
    addRow({ seq: p.seq, event, payload: p }, true);
    if (task && p.task_id === taskId) {
      const wasTerminal = TERMINAL.has(task.status);
      applyEvent(task, event, p, streamed);
      if (!wasTerminal && TERMINAL.has(task.status)) {
        task.completed_at = task.completed_at ?? new Date().toISOString();
        refresh();
      }
      renderTop();
    }
  }

  let openRef = null;
  let loading = false;
  async function load() {
    if (loading || task || left) return;
    loading = true;
    try {
      const [t, ev] = await Promise.all([api(`/api/tasks/${taskId}`), api(`/api/tasks/${taskId}/events`)]);
      if (left) return;
      task = t.data;
      if (openRef) socket.off([openRef]);
      openRef = null;
      rows.replaceChildren();
      lastSeq = 0;
      eventCount = 0;
      deltaRun = null;
      for (const e of ev.data) addRow(e, false);
      streamed.set(
        task.id,
        ev.data
          .filter((e) => e.event === 'text_delta')
          .map((e) => e.payload.delta)
          .join(''),
      );
      renderTop();
      timeline.hidden = false;
      // Join with last_seq: whatever happened since the log was read is replayed first.
      channel = socket.channel(`task:${taskId}`, () => ({ last_seq: lastSeq }));
      for (const name of TASK_EVENTS) channel.on(name, (p) => onLive(name, p));
      channel.join().receive('error', (r) => {
        note.textContent = `channel refused: ${r.reason ?? 'error'}`;
      });
    } catch (err) {
      if (left) return;
      if (err.status === 404) {
        timeline.remove();
        top.replaceChildren(h('p', { class: 'error', 'data-role': 'not-found' }, 'No such task.'));
      } else if (err instanceof ApiError && err.status === 401) {
        /* back at sign-in */
      } else {
        top.replaceChildren(h('p', { class: 'error' }, `Could not load the task: ${err.message}`));
        // Try again when the realtime connection is back (the gateway is reachable again).
        if (!openRef) openRef = socket.onOpen(() => load());
        // A socket that has not noticed the outage yet may not reopen: try again in a while too.
        if (socket.isConnected()) setTimeout(load, 3000);
      }
    } finally {
      loading = false;
    }
  }
  load();

  return {
    leave() {
      left = true;
      if (openRef) socket.off([openRef]);
      channel?.leave();
    },
  };
}
