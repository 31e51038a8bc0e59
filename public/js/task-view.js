// @ts-check
// How a task looks: status, progress bar, output, in the list and on its own page.

import { h, timeAgo } from './dom.js';
import { TASK_KINDS } from './events.js';

export const TERMINAL = new Set(['succeeded', 'failed', 'canceled']);

export function statusPill(status) {
  return h('span', { class: `pill ${status}`, 'data-role': 'status' }, status);
}

export function progressBar(task) {
  const known = task.progress !== null && task.progress !== undefined;
  const value = task.status === 'succeeded' ? 100 : known ? task.progress : 0;
  const indeterminate = !known && task.status === 'processing';
  return h(
    'div',
    {
      class: `bar${indeterminate ? ' indeterminate' : ''} ${task.status}`,
      role: 'progressbar',
      'aria-valuemin': 0,
      'aria-valuemax': 100,
      'aria-valuenow': value,
      'aria-label': 'progress',
    },
    h('span', { style: `width:${value}%` }),
    h('em', {}, indeterminate ? '…' : `${value}%`),
  );
}

/** The result: images, a video, or the text (streamed so far, or final). */
export function outputView(task, streamed) {
  const out = task.output;
  if (out && Array.isArray(out.urls) && out.urls.length) {
    const video = task.task_type === 'video_gen';
    return h(
      'div',
      { class: 'output media', 'data-role': 'output' },
      out.urls.map((u) =>
        video
          ? h('video', { src: u, controls: true, muted: true, playsinline: true, loop: true, preload: 'metadata' })
          : h(
              'a',
              { href: u, target: '_blank', rel: 'noopener' },
              h('img', { src: u, alt: task.input_data?.prompt ?? 'generated image', loading: 'lazy' }),
            ),
      ),
    );
  }
  const final = out && typeof out.text === 'string';
  const text = final ? out.text : streamed;
  if (!text) return null;
  const box = h(
    'div',
    { class: `output text${TERMINAL.has(task.status) ? '' : ' streaming'}`, 'data-role': 'output' },
    text,
  );
  if (final || (task.status !== 'failed' && task.status !== 'canceled')) return box;
  // Streamed before the task failed or was canceled: kept, but not to be taken for a result.
  return h(
    'div',
    { class: 'partial', 'data-role': 'partial-output' },
    h(
      'p',
      { class: 'partial-label' },
      task.status === 'failed' ? 'partial output before the failure' : 'partial output before it was canceled',
    ),
    box,
  );
}

export function errorView(task) {
  if (!task.error || task.status === 'succeeded') return null;
  return h(
    'p',
    { class: 'task-error' },
    task.status === 'canceled' ? 'Canceled' : `${task.error.code}: ${task.error.message}`,
  );
}

/** A task type's kind (`image_gen` → image), from the kinds the gateway serves (`/js/events.js`). */
const KIND = Object.fromEntries(TASK_KINDS.map((k) => [k.taskType, k.kind]));

/** What went wrong with the last Cancel or Retry, said where it was clicked (no dialog). */
export function actionErrorView(message) {
  return message ? h('p', { class: 'action-error', role: 'alert', 'data-role': 'action-error' }, message) : null;
}

/** Cancel while the task runs, Retry once it failed (a new task with the same input). */
export function taskButtons(task, { onCancel, onRetry, className = 'link' }) {
  if (!TERMINAL.has(task.status))
    return h('button', { type: 'button', class: `${className} danger`, onclick: () => onCancel(task) }, 'Cancel');
  if (task.status === 'failed' && onRetry)
    return h(
      'button',
      { type: 'button', class: className, 'data-role': 'retry', onclick: () => onRetry(task) },
      'Retry',
    );
  return null;
}

/** A task's card in the list. */
export function taskCard(task, { streamed, onCancel, onRetry, actionError }) {
  const prompt = task.input_data?.prompt ?? '';
  return h(
    'li',
    { class: `task ${task.status}`, dataset: { taskId: task.id, status: task.status } },
    h(
      'div',
      { class: 'task-head' },
      statusPill(task.status),
      h('span', { class: 'model' }, `${KIND[task.task_type] ?? task.task_type} · ${task.model}`),
      h('time', { datetime: task.inserted_at, title: task.inserted_at }, timeAgo(task.inserted_at)),
    ),
    h('p', { class: 'prompt', title: prompt }, prompt),
    TERMINAL.has(task.status) && task.status !== 'succeeded' ? null : progressBar(task),
    outputView(task, streamed),
    errorView(task),
    actionErrorView(actionError),
    h(
      'div',
      { class: 'task-actions' },
      h('a', { href: `#/tasks/${task.id}` }, 'Timeline →'),
      taskButtons(task, { onCancel, onRetry }),
    ),
  );
}
