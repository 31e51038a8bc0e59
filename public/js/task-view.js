// @ts-check
// How a task looks: status, progress bar, output, in the list and on its own page.

import { h, relativeTime } from './dom.js';
import { TASK_KINDS } from './events.js';

export const TERMINAL = new Set(['succeeded', 'failed', 'canceled']);

export function statusPill(status) {
  return h('span', { class: `pill ${status}`, 'data-role': 'status' }, status);
}

export function progressBar(task) {
  const known = task.progress !== null && task.progress !== undefined;
  const value = task.status === 'succeeded' ? 100 : known ? task.progress : 0;
  // Running with no progress reported (most image models report none): a bar that moves without
  // a value, as ARIA has it for an indeterminate progressbar (no aria-valuenow).
  const indeterminate = !known && task.status === 'processing';
  return h(
    'div',
    {
      class: `bar${indeterminate ? ' indeterminate' : ''} ${task.status}`,
      role: 'progressbar',
      'aria-valuemin': 0,
      'aria-valuemax': 100,
      'aria-valuenow': indeterminate ? undefined : value,
      'aria-valuetext': indeterminate ? 'generating' : undefined,
      'aria-label': 'progress',
    },
    h('span', { style: indeterminate ? undefined : `width:${value}%` }),
    indeterminate ? null : h('em', {}, `${value}%`),
  );
}

/** `pyre-1a2b3c4d.png` (`-2`, … when there are several): the name a downloaded output is saved under. */
function downloadName(task, url, i, count) {
  const ext = /\.([a-z0-9]{2,5})$/i.exec(new URL(url, location.href).pathname)?.[1];
  const fallback = task.task_type === 'video_gen' ? 'mp4' : 'png';
  return `pyre-${task.id.slice(0, 8)}${count > 1 ? `-${i + 1}` : ''}.${ext ?? fallback}`;
}

/** A Download link for each image or video. */
function downloadLinks(task, urls) {
  return h(
    'div',
    { class: 'output-actions' },
    urls.map((u, i) =>
      h(
        'a',
        {
          href: u,
          download: downloadName(task, u, i, urls.length),
          // Stored elsewhere (another origin), a browser ignores `download`: open it in a tab, then.
          target: '_blank',
          rel: 'noopener',
          class: 'button small',
          'data-role': 'download',
        },
        urls.length > 1 ? `Download ${i + 1}` : 'Download',
      ),
    ),
  );
}

/** Puts text on the clipboard (navigator.clipboard where the page is a secure context, else the old way). */
async function copyText(text) {
  if (navigator.clipboard && window.isSecureContext) return navigator.clipboard.writeText(text);
  const area = h('textarea', { readonly: true, style: 'position:fixed;opacity:0' }, text);
  document.body.append(area);
  area.select();
  const ok = document.execCommand('copy');
  area.remove();
  if (!ok) throw new Error('copy refused');
}

/** A Copy button for text; it says whether the copy worked. */
function copyButton(text) {
  const button = h('button', { type: 'button', class: 'small', 'data-role': 'copy' }, 'Copy');
  button.addEventListener('click', async () => {
    try {
      await copyText(text);
      button.textContent = 'Copied';
    } catch {
      button.textContent = 'Could not copy: select the text instead';
    }
    setTimeout(() => (button.textContent = 'Copy'), 2000);
  });
  return h('div', { class: 'output-actions' }, button);
}

/** The result: images, a video, or the text (streamed so far, or final). */
export function outputView(task, streamed) {
  const out = task.output;
  if (out && Array.isArray(out.urls) && out.urls.length) {
    const video = task.task_type === 'video_gen';
    const media = h(
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
    return [media, downloadLinks(task, out.urls)];
  }
  const final = out && typeof out.text === 'string';
  const text = final ? out.text : streamed;
  if (!text) return null;
  const box = h(
    'div',
    { class: `output text${TERMINAL.has(task.status) ? '' : ' streaming'}`, 'data-role': 'output' },
    text,
  );
  if (final || (task.status !== 'failed' && task.status !== 'canceled'))
    return TERMINAL.has(task.status) ? [box, copyButton(text)] : box;
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

/** Errors that ask the user to change what they sent before trying again. */
const CHANGE_FIRST = new Set(['content_refused', 'invalid_input']);

/**
 * "Change prompt and retry": opens, under the task, its prompt to edit; its Retry submits a new
 * task with the edited prompt and the same parameters (onRetry(task, prompt)).
 */
function editRetryButton(task, onRetry, className) {
  const button = h(
    'button',
    { type: 'button', class: className, 'data-role': 'edit-retry' },
    'Change prompt and retry',
  );
  button.addEventListener('click', () => {
    const host = /** @type {HTMLElement} */ (button.closest('[data-task-id]'));
    if (!host || host.querySelector('[data-role=retry-edit]')) return;
    const area = h(
      'textarea',
      { rows: 3, maxlength: 10000, 'aria-label': 'new prompt' },
      task.input_data?.prompt ?? '',
    );
    const form = h(
      'form',
      { class: 'retry-edit', 'data-role': 'retry-edit' },
      h('label', {}, 'Prompt for the new task'),
      area,
      h(
        'div',
        { class: 'task-actions' },
        h('button', { type: 'submit', class: 'primary small' }, 'Retry'),
        h('button', { type: 'button', class: 'link', onclick: () => form.remove() }, 'Keep it'),
      ),
    );
    form.addEventListener('submit', async (e) => {
      e.preventDefault();
      const submit = /** @type {HTMLButtonElement} */ (form.querySelector('button[type=submit]'));
      submit.disabled = true;
      try {
        await onRetry(task, area.value);
      } finally {
        form.remove();
      }
    });
    host.append(form);
    area.focus();
  });
  return button;
}

/**
 * Cancel while the task runs; once it failed or was canceled, Retry (a new task with the same
 * input), or, when the error asks for a change (content_refused), "Change prompt and retry".
 */
export function taskButtons(task, { onCancel, onRetry, className = 'link' }) {
  if (!TERMINAL.has(task.status))
    return h('button', { type: 'button', class: `${className} danger`, onclick: () => onCancel(task) }, 'Cancel');
  if (task.status === 'failed' && onRetry && CHANGE_FIRST.has(task.error?.code))
    return editRetryButton(task, onRetry, className);
  if ((task.status === 'failed' || task.status === 'canceled') && onRetry)
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
      relativeTime(task.inserted_at),
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
