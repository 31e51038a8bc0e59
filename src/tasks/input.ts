import { z } from 'zod';
import { addFieldError, emptyFieldErrors, ValidationError, type FieldErrors } from './errors';
import { kindNamed, kindOf, TASK_KINDS, type TaskType } from './events';
import { MAX_PROMPT_CHARS, type ModelRegistry, type ModelSpec } from './models';

/** A request to make a task, validated: a model is always chosen. */
export interface TaskRequest {
  taskType: TaskType;
  model: ModelSpec;
  prompt: string;
  /** The model's parameters with defaults applied, in the client's names. */
  params: Record<string, unknown>;
  /** What the task stores as input_data: type, model, prompt and params. */
  inputData: Record<string, unknown>;
  /** The same, in the provider's input names. */
  providerInput: Record<string, unknown>;
}

const RESERVED = new Set(['type', 'prompt', 'model']);

/**
 * Why a client's text cannot be stored, or undefined. Inputs are kept as jsonb, and PostgreSQL's
 * jsonb refuses `\u0000` and unpaired UTF-16 surrogates (`"\ud800"` is valid JSON, not Unicode):
 * refused here with the field named instead of failing the insert.
 */
export function unstorableText(s: string): string | undefined {
  if (s.includes('\u0000')) return 'must not contain the NUL character (U+0000)';
  // With the u flag a proper surrogate pair is one code point; only a lone half matches.
  if (/\p{Cs}/u.test(s)) return 'must be valid Unicode text (it has an unpaired surrogate)';
  return undefined;
}

/** Checks every string of validated params (a value, or a list of values) with unstorableText. */
function checkStorable(params: Record<string, unknown>, errors: FieldErrors): void {
  for (const [name, v] of Object.entries(params)) {
    const items = Array.isArray(v) ? v.map((x, i) => [`${name}.${i}`, x] as const) : [[name, v] as const];
    for (const [field, x] of items) {
      const why = typeof x === 'string' ? unstorableText(x) : undefined;
      if (why) addFieldError(errors, field, why);
    }
  }
}

/** `1 item`, `10 items`, `10,000 characters`. */
function count(n: number | bigint, unit: string): string {
  return `${n.toLocaleString('en-US')} ${unit}${n === 1 ? '' : 's'}`;
}

/** zod's name of a JSON type, as a reader says it: `a string`, `an array`, `true or false`. */
function typeWord(expected: string): string {
  switch (expected) {
    case 'int':
      return 'an integer';
    case 'boolean':
      return 'true or false';
    case 'array':
    case 'object':
      return `an ${expected}`;
    default:
      return `a ${expected}`;
  }
}

const num = (n: number | bigint) => n.toLocaleString('en-US');

/** Render zod issues the way Ecto renders changeset errors, in plain English with the right unit. */
export function fieldErrors(error: z.ZodError, prefix: string[] = [], modelName?: string): FieldErrors {
  const out = emptyFieldErrors();
  const add = (field: string, msg: string) => addFieldError(out, field, msg);
  const fieldOf = (path: PropertyKey[]) => [...prefix, ...path.map(String)].join('.') || 'body';
  // A value of the wrong type gets that one message: zod goes on to check a string's length
  // against a list's limit ("should have at most 10 characters" for a list of at most 10).
  const wrongType = new Set(error.issues.filter((i) => i.code === 'invalid_type').map((i) => fieldOf(i.path)));
  for (const issue of error.issues) {
    const field = fieldOf(issue.path);
    if (issue.code !== 'invalid_type' && wrongType.has(field)) continue;
    const unit = issue.code === 'too_small' || issue.code === 'too_big' ? issue.origin : undefined;
    switch (issue.code) {
      case 'unrecognized_keys':
        for (const k of issue.keys) {
          add(
            [...prefix, ...issue.path.map(String), k].join('.'),
            modelName ? `is not a parameter of ${modelName}` : 'is not allowed',
          );
        }
        break;
      case 'invalid_value':
        add(
          field,
          issue.values.length === 1
            ? `must be ${JSON.stringify(issue.values[0])}`
            : `must be one of: ${issue.values.map((v) => String(v)).join(', ')}`,
        );
        break;
      case 'too_small':
        add(
          field,
          unit === 'array' || unit === 'string'
            ? `should have at least ${count(issue.minimum, unit === 'string' ? 'character' : 'item')}`
            : issue.inclusive === false
              ? `must be greater than ${num(issue.minimum)}`
              : `must be at least ${num(issue.minimum)}`,
        );
        break;
      case 'too_big':
        add(
          field,
          unit === 'array' || unit === 'string'
            ? `should have at most ${count(issue.maximum, unit === 'string' ? 'character' : 'item')}`
            : issue.inclusive === false
              ? `must be less than ${num(issue.maximum)}`
              : `must be at most ${num(issue.maximum)}`,
        );
        break;
      case 'invalid_type':
        add(field, issue.input === undefined ? "can't be blank" : `must be ${typeWord(issue.expected)}`);
        break;
      default:
        add(field, issue.message);
    }
  }
  return out;
}

/**
 * Validate what a client sent as `input_data` (REST) or as a `*_generate` payload (channel).
 * `impliedType` is the type a channel event names (`image_generate` → image_gen).
 * Throws ValidationError naming each bad field.
 */
export function parseTaskInput(registry: ModelRegistry, raw: unknown, impliedType?: TaskType): TaskRequest {
  if (typeof raw !== 'object' || raw === null || Array.isArray(raw)) {
    throw new ValidationError({ input_data: ['must be a JSON object'] });
  }
  const input = raw as Record<string, unknown>;
  const errors = emptyFieldErrors();

  let taskType: TaskType | undefined = impliedType;
  if (input.type !== undefined && input.type !== null) {
    const t = typeof input.type === 'string' ? kindNamed(input.type)?.taskType : undefined;
    if (!t) errors.type = [`must be one of: ${TASK_KINDS.map((k) => k.kind).join(', ')}`];
    else if (impliedType && t !== impliedType)
      errors.type = [`does not match the event (${kindOf(impliedType).generateEvent})`];
    else taskType = t;
  }
  // A missing type means text, as the old backend did.
  taskType ??= 'text_gen';

  const prompt = input.prompt;
  if (prompt === undefined || prompt === null || (typeof prompt === 'string' && prompt.trim() === '')) {
    errors.prompt = ["can't be blank"];
  } else if (typeof prompt !== 'string') {
    errors.prompt = ['must be a string'];
  } else if (prompt.length > MAX_PROMPT_CHARS) {
    errors.prompt = [`should have at most ${count(MAX_PROMPT_CHARS, 'character')}`];
  } else {
    const why = unstorableText(prompt);
    if (why) errors.prompt = [why];
  }

  let model: ModelSpec | undefined;
  if (input.model === undefined || input.model === null || input.model === '') {
    model = registry.defaultFor(taskType);
  } else if (typeof input.model !== 'string') {
    errors.model = ['must be a string'];
  } else {
    model = registry.get(input.model);
    if (!model) errors.model = ['is not a known model (see GET /api/models)'];
    else if (model.taskType !== taskType) {
      errors.model = [`is not supported for ${taskType}`]; // the contract's own example message
      model = undefined;
    }
  }

  let params: Record<string, unknown> = {};
  if (model) {
    const rest = Object.fromEntries(Object.entries(input).filter(([k]) => !RESERVED.has(k)));
    const parsed = model.params.safeParse(rest, { reportInput: true });
    if (parsed.success) {
      params = parsed.data as Record<string, unknown>;
      checkStorable(params, errors);
    } else Object.assign(errors, fieldErrors(parsed.error, [], model.name));
  }

  if (Object.keys(errors).length > 0 || !model) throw new ValidationError(errors);
  const p = prompt as string;
  return {
    taskType,
    model,
    prompt: p,
    params,
    inputData: { type: kindOf(taskType).kind, model: model.name, prompt: p, ...params },
    providerInput: model.toProviderInput(p, params),
  };
}
