// @ts-check
// The "new task" form, generated from GET /api/models: each model's parameters with their limits.

import { h, $ } from './dom.js';

/** The kinds the models serve, in the order GET /api/models lists them, as [type, label]. */
function typesOf(models) {
  const kinds = [...new Set(models.map((m) => m.type))];
  return kinds.map((k) => [k, k.charAt(0).toUpperCase() + k.slice(1)]);
}

/** "512 – 2048", "up to 10 URLs", "one of …": the limits a parameter's schema states. */
function limits(name, s) {
  const parts = [];
  if (s.type === 'integer' || s.type === 'number') {
    if (s.minimum !== undefined && s.maximum !== undefined && Math.abs(s.maximum) < 1e15)
      parts.push(`${s.minimum} – ${s.maximum}`);
    else if (s.minimum !== undefined && Math.abs(s.minimum) < 1e15) parts.push(`≥ ${s.minimum}`);
    else if (s.maximum !== undefined && Math.abs(s.maximum) < 1e15) parts.push(`≤ ${s.maximum}`);
    if (s.type === 'integer') parts.push('whole number');
  }
  if (s.type === 'string' && s.maxLength) parts.push(`up to ${s.maxLength.toLocaleString()} characters`);
  if (s.type === 'array') parts.push(`one URL per line, up to ${s.maxItems ?? '∞'}`);
  if (s.format === 'uri') parts.push('http(s) URL');
  if (s.default !== undefined && !(Array.isArray(s.default) && s.default.length === 0))
    parts.push(`default ${JSON.stringify(s.default)}`);
  if (s.default === undefined && s.type !== 'array') parts.push('optional');
  return parts.join(' · ');
}

function label(name) {
  return name.replace(/_/g, ' ');
}

/** One parameter's control; returns the element and a reader giving the value to send (or undefined). */
function control(name, s) {
  const id = `param-${name}`;
  let input;
  let read;
  if (s.const !== undefined) return null; // fixed by the model (e.g. fps 24): nothing to choose
  if (Array.isArray(s.enum)) {
    input = h(
      'select',
      { id, name },
      s.enum.map((v) => h('option', { value: v, selected: v === s.default }, v)),
    );
    read = () => (input.value === String(s.default) ? undefined : input.value);
  } else if (s.type === 'boolean') {
    input = h('input', { id, name, type: 'checkbox', checked: s.default === true });
    read = () => (input.checked === (s.default === true) ? undefined : input.checked);
  } else if (s.type === 'integer' || s.type === 'number') {
    const big = (v) => v === undefined || Math.abs(v) > 1e15;
    input = h('input', {
      id,
      name,
      type: 'number',
      inputmode: s.type === 'integer' ? 'numeric' : 'decimal',
      min: big(s.minimum) ? undefined : s.minimum,
      max: big(s.maximum) ? undefined : s.maximum,
      step: s.type === 'integer' ? 1 : 'any',
      placeholder: s.default ?? '',
    });
    read = () => (input.value === '' ? undefined : Number(input.value));
  } else if (s.type === 'array') {
    input = h('textarea', { id, name, rows: 2, placeholder: 'https://…', spellcheck: 'false' });
    read = () => {
      // One URL per line, as the hint says: a space inside a line stays part of it.
      const urls = input.value
        .split(/\r?\n/)
        .map((l) => l.trim())
        .filter(Boolean);
      return urls.length ? urls : undefined;
    };
  } else {
    input =
      s.maxLength && s.maxLength > 200
        ? h('textarea', { id, name, rows: 2, maxlength: s.maxLength })
        : h('input', { id, name, type: s.format === 'uri' ? 'url' : 'text', maxlength: s.maxLength });
    read = () => (input.value.trim() === '' ? undefined : input.value);
  }
  const row = h(
    'div',
    { class: `param${s.type === 'boolean' ? ' check' : ''}`, dataset: { param: name } },
    s.type === 'boolean'
      ? h('label', { for: id }, input, ' ', label(name))
      : [h('label', { for: id }, label(name)), input],
    h('p', { class: 'hint' }, limits(name, s)),
    h('p', { class: 'field-error', dataset: { errorFor: name }, hidden: true }),
  );
  return { row, read };
}

/**
 * A paste (or drop) longer than the prompt may be is cut by the browser (maxlength), silently:
 * say so under the prompt, with how much was left out, until the prompt is edited again.
 */
function noticeCutPrompt(form, prompt) {
  const notice = $('#prompt-cut', form);
  let over = 0;
  const inserting = (text) => {
    const kept = prompt.value.length - (prompt.selectionEnd - prompt.selectionStart);
    over = kept + text.replace(/\r\n?/g, '\n').length - prompt.maxLength;
  };
  prompt.addEventListener('paste', (e) => inserting(e.clipboardData?.getData('text/plain') ?? ''));
  prompt.addEventListener('drop', (e) => inserting(e.dataTransfer?.getData('text/plain') ?? ''));
  prompt.addEventListener('input', () => {
    notice.hidden = !(over > 0 && prompt.maxLength > 0);
    if (!notice.hidden)
      notice.textContent =
        `The pasted text was cut at ${prompt.maxLength.toLocaleString()} characters: ` +
        `the last ${over.toLocaleString()} were left out.`;
    over = 0;
  });
}

/**
 * Builds the form for the models given; calls onSubmit(body) with the REST body.
 * Returns showErrors(errors) for a 422's field messages.
 */
export function taskForm(form, models, onSubmit) {
  const types = typesOf(models);
  let type = types[0]?.[0] ?? 'image';
  let readers = [];
  const picker = $('#type-picker', form);
  const modelSel = $('#model', form);
  const prompt = $('#prompt', form);
  const count = $('#prompt-count', form);

  for (const [value, text] of types) {
    const id = `type-${value}`;
    picker.append(
      h('input', {
        type: 'radio',
        name: 'type',
        id,
        value,
        checked: value === type,
        onchange: () => {
          type = value;
          fillModels();
        },
      }),
      h('label', { for: id }, text),
    );
  }

  function fillModels() {
    const list = models.filter((m) => m.type === type);
    modelSel.replaceChildren(
      ...list.map((m) =>
        h('option', { value: m.name, selected: m.default }, m.default ? `${m.name} (default)` : m.name),
      ),
    );
    fillParams();
  }

  function current() {
    return models.find((m) => m.name === modelSel.value);
  }

  function fillParams() {
    const m = current();
    $('#model-description', form).textContent = m ? `${m.description} (on ${m.provider})` : '';
    const props = m ? m.input_schema.properties : {};
    const maxPrompt = props.prompt?.maxLength ?? 10000;
    prompt.maxLength = maxPrompt;
    $('#prompt-max', form).textContent = maxPrompt.toLocaleString();
    readers = [];
    const rows = [];
    for (const [name, s] of Object.entries(props)) {
      if (name === 'prompt') continue;
      const c = control(name, s);
      if (!c) continue;
      readers.push([name, c.read]);
      rows.push(c.row);
    }
    $('#params', form).replaceChildren(...rows);
    $('#params-box', form).hidden = rows.length === 0;
    clearErrors();
  }

  function clearErrors() {
    for (const el of form.querySelectorAll('.field-error')) el.hidden = true;
    $('#form-error', form).hidden = true;
  }

  function showErrors(errors) {
    clearErrors();
    const rest = [];
    const shown = new Map(); // field element → its lines
    for (const [field, msgs] of Object.entries(errors || {})) {
      const text = Array.isArray(msgs) ? msgs.join('; ') : String(msgs);
      // "images.0": the first line of the images field; "input_data.width" would be "width".
      const path = field.replace(/^input_data\./, '').split('.');
      const el = form.querySelector(`[data-error-for="${CSS.escape(path[0])}"]`);
      if (el) {
        const lines = shown.get(el) ?? [];
        const where = path
          .slice(1)
          .map((p) => (/^\d+$/.test(p) ? `line ${Number(p) + 1}` : p))
          .join(' ');
        lines.push(where ? `${where}: ${text}` : text);
        shown.set(el, lines);
        if (path[0] !== 'prompt') $('#params-box', form).open = true;
      } else rest.push(field === 'detail' ? text : `${field}: ${text}`);
    }
    for (const [el, lines] of shown) {
      el.textContent = lines.join('\n');
      el.hidden = false;
    }
    if (rest.length) {
      $('#form-error', form).textContent = rest.join('\n');
      $('#form-error', form).hidden = false;
    }
  }

  modelSel.addEventListener('change', fillParams);
  prompt.addEventListener('input', () => {
    count.textContent = prompt.value.length.toLocaleString();
  });
  noticeCutPrompt(form, prompt);
  form.addEventListener('submit', async (e) => {
    e.preventDefault();
    clearErrors();
    const input = { type, model: modelSel.value, prompt: prompt.value };
    for (const [name, read] of readers) {
      const v = read();
      if (v !== undefined) input[name] = v;
    }
    const button = $('#submit', form);
    button.disabled = true;
    try {
      await onSubmit({ input_data: input });
    } finally {
      button.disabled = false;
    }
  });

  fillModels();
  return { showErrors, clearErrors };
}
