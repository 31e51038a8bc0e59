/**
 * Pure logic tested directly (no HTTP, no database): task input validation and its messages,
 * the retry backoff and the abortable sleep, the idempotency body hash, the run outcome of an error.
 * The HTTP suites check that these reach clients; here each rule is checked once, cheaply.
 */
import { z } from 'zod';
import { bodyHash } from '../../src/http/idempotency';
import { backoffMs, sleep } from '../../src/retry';
import { outcomeOf } from '../../src/runner/policy';
import { ValidationError } from '../../src/tasks/errors';
import { fieldErrors, parseTaskInput, unstorableText } from '../../src/tasks/input';
import { MAX_PROMPT_CHARS, ModelRegistry } from '../../src/tasks/models';

const registry = new ModelRegistry();

/** The field errors parseTaskInput throws for `raw`, or fails the test if it accepts it. */
function errorsOf(raw: unknown, implied?: Parameters<typeof parseTaskInput>[2]): Record<string, string[]> {
  try {
    parseTaskInput(registry, raw, implied);
  } catch (err) {
    expect(err).toBeInstanceOf(ValidationError);
    return (err as ValidationError).fields;
  }
  throw new Error(`accepted ${JSON.stringify(raw)}`);
}

describe('parseTaskInput', () => {
  test('a missing type means text, with the default text model and its defaults applied', () => {
    const req = parseTaskInput(registry, { prompt: 'hello' });
    expect(req.taskType).toBe('text_gen');
    expect(req.model).toBe(registry.defaultFor('text_gen'));
    expect(req.inputData).toMatchObject({ type: 'text', model: req.model.name, prompt: 'hello' });
  });

  test('an image request keeps its params in client names and maps them to the provider', () => {
    const req = parseTaskInput(registry, { type: 'image', prompt: 'a cat', aspect_ratio: '16:9' });
    expect(req.taskType).toBe('image_gen');
    expect(req.params).toMatchObject({ aspect_ratio: '16:9' });
    expect(req.providerInput).toMatchObject({ prompt: 'a cat', aspect_ratio: '16:9' });
  });

  test.each([
    ['null', null, { input_data: ['must be a JSON object'] }],
    ['a list', [1, 2], { input_data: ['must be a JSON object'] }],
    ['a string', 'text', { input_data: ['must be a JSON object'] }],
    ['no prompt', { type: 'image' }, { prompt: ["can't be blank"] }],
    ['a blank prompt', { type: 'image', prompt: '   ' }, { prompt: ["can't be blank"] }],
    ['a numeric prompt', { type: 'image', prompt: 7 }, { prompt: ['must be a string'] }],
    [
      'a prompt one character too long',
      { type: 'image', prompt: 'x'.repeat(MAX_PROMPT_CHARS + 1) },
      { prompt: ['should have at most 10,000 characters'] },
    ],
    [
      'a NUL in the prompt',
      { type: 'image', prompt: 'a\u0000b' },
      { prompt: ['must not contain the NUL character (U+0000)'] },
    ],
    ['an unknown type', { type: 'sound', prompt: 'x' }, { type: ['must be one of: image, video, text'] }],
    [
      'an unknown model',
      { type: 'image', prompt: 'x', model: 'nope/nope' },
      { model: ['is not a known model (see GET /api/models)'] },
    ],
    ['a numeric model', { type: 'image', prompt: 'x', model: 3 }, { model: ['must be a string'] }],
  ])('%s is refused', (_what, raw, expected) => {
    expect(errorsOf(raw)).toEqual(expected);
  });

  test("a model of another task type is refused with the contract's message", () => {
    const video = registry.defaultFor('video_gen').name;
    expect(errorsOf({ type: 'image', prompt: 'x', model: video })).toEqual({
      model: ['is not supported for image_gen'],
    });
  });

  test('a type that disagrees with the channel event is refused, naming the event', () => {
    expect(errorsOf({ type: 'video', prompt: 'x' }, 'image_gen')).toEqual({
      type: ['does not match the event (image_generate)'],
    });
  });

  test('a key named like an Object.prototype member is an unknown parameter, not a crash', () => {
    for (const key of ['constructor', 'toString', 'hasOwnProperty', 'valueOf']) {
      const errors = errorsOf({ type: 'image', prompt: 'x', [key]: 1 });
      expect(errors[key]).toEqual([`is not a parameter of ${registry.defaultFor('image_gen').name}`]);
    }
    const proto = errorsOf(JSON.parse('{"type":"image","prompt":"x","__proto__":{"a":1}}'));
    expect(proto.__proto__).toEqual([`is not a parameter of ${registry.defaultFor('image_gen').name}`]);
    expect(({} as Record<string, unknown>).a).toBeUndefined();
  });

  test('several bad fields are all named at once', () => {
    const errors = errorsOf({ type: 'image', prompt: '', aspect_ratio: 'wide', bogus: true });
    expect(Object.keys(errors).sort()).toEqual(['aspect_ratio', 'bogus', 'prompt']);
    expect(errors.aspect_ratio[0]).toMatch(/^must be one of: /);
  });
});

describe('fieldErrors: messages in plain English with the right unit', () => {
  const schema = z.strictObject({
    images: z.array(z.string()).max(2),
    name: z.string().min(2).max(3),
    n: z.number().int().min(1).max(4),
    ratio: z.number().gt(0).lt(1),
    flag: z.boolean(),
    kind: z.literal('one'),
  });
  const errorsFor = (value: unknown) => {
    const parsed = schema.safeParse(value, { reportInput: true });
    expect(parsed.success).toBe(false);
    return fieldErrors(parsed.error!, ['input_data']);
  };

  test('a list limit is counted in items, a text limit in characters, numbers in bounds', () => {
    const errors = errorsFor({ images: ['a', 'b', 'c'], name: 'x', n: 9, ratio: 1, flag: true, kind: 'one' });
    expect(errors).toEqual({
      'input_data.images': ['should have at most 2 items'],
      'input_data.name': ['should have at least 2 characters'],
      'input_data.n': ['must be at most 4'],
      'input_data.ratio': ['must be less than 1'],
    });
  });

  test('a value of the wrong type gets one message saying the expected type, with an article', () => {
    const errors = errorsFor({ images: 'a', name: 2, n: 1.5, ratio: 0.5, flag: 'yes', kind: 'two' });
    expect(errors).toEqual({
      'input_data.images': ['must be an array'],
      'input_data.name': ['must be a string'],
      'input_data.n': ['must be an integer'],
      'input_data.flag': ['must be true or false'],
      'input_data.kind': ['must be "one"'],
    });
  });

  test("a missing field can't be blank; an unknown one is not allowed", () => {
    const errors = errorsFor({ extra: 1 });
    expect(errors['input_data.extra']).toEqual(['is not allowed']);
    expect(errors['input_data.name']).toEqual(["can't be blank"]);
  });
});

describe('unstorableText', () => {
  test.each([
    ['plain', undefined],
    ['emoji 😀 is a proper pair', undefined],
    ['nul \u0000', 'must not contain the NUL character (U+0000)'],
    ['lone \ud800 half', 'must be valid Unicode text (it has an unpaired surrogate)'],
  ])('%j', (text, expected) => {
    expect(unstorableText(text)).toBe(expected);
  });
});

describe('backoffMs', () => {
  const policy = { attempts: 5, baseMs: 1000, maxMs: 5000 };
  test('doubles per try from base, capped, jittered over the upper half', () => {
    expect([1, 2, 3, 4].map((n) => backoffMs(policy, n, () => 0))).toEqual([500, 1000, 2000, 2500]);
    expect([1, 2, 3, 4].map((n) => backoffMs(policy, n, () => 1))).toEqual([1000, 2000, 4000, 5000]);
    expect(backoffMs(policy, 0, () => 1)).toBe(1000);
  });
});

describe('sleep', () => {
  test('rejects with the abort reason, at once when already aborted', async () => {
    const already = new AbortController();
    already.abort(new Error('stop now'));
    await expect(sleep(60_000, already.signal)).rejects.toThrow('stop now');
    const later = new AbortController();
    const waiting = sleep(60_000, later.signal);
    later.abort(new Error('stopped later'));
    await expect(waiting).rejects.toThrow('stopped later');
  });

  test('a wake-up ends the wait early and unregisters; a wake-up during registration resolves at once', async () => {
    let wake: (() => void) | undefined;
    let unregistered = 0;
    const waiting = sleep(60_000, undefined, (w) => {
      wake = w;
      return () => unregistered++;
    });
    wake!();
    await expect(waiting).resolves.toBeUndefined();
    expect(unregistered).toBe(1);
    let offCalls = 0;
    await sleep(60_000, undefined, (w) => {
      w();
      return () => offCalls++;
    });
    expect(offCalls).toBe(1);
  });
});

describe('bodyHash', () => {
  test('is independent of key order and sensitive to values', () => {
    expect(bodyHash({ a: 1, b: { c: [1, 2], d: 'x' } })).toBe(bodyHash({ b: { d: 'x', c: [1, 2] }, a: 1 }));
    expect(bodyHash({ a: 1 })).not.toBe(bodyHash({ a: 2 }));
    expect(bodyHash([1, 2])).not.toBe(bodyHash([2, 1]));
    expect(bodyHash(undefined)).toBe(bodyHash(null));
  });

  test('keeps a __proto__ key as a key', () => {
    expect(bodyHash(JSON.parse('{"__proto__":{"x":1}}'))).not.toBe(bodyHash({}));
  });

  test('refuses a body nested deeper than its limit instead of overflowing the stack', () => {
    let deep: unknown = 1;
    for (let i = 0; i < 10_000; i++) deep = [deep];
    expect(() => bodyHash(deep)).toThrow(RangeError);
  });
});

describe('outcomeOf: what a run does after an error', () => {
  test('a database that went away snoozes without counting a try', () => {
    const err = Object.assign(new Error('connect ECONNREFUSED 127.0.0.1:5432'), { code: 'ECONNREFUSED' });
    expect(outcomeOf(err)).toMatchObject({ kind: 'snooze', reason: 'database unavailable' });
  });

  test('an unknown error is retried, its message kept as the reason', () => {
    expect(outcomeOf(new Error('socket hang up'))).toEqual({ kind: 'retry', reason: 'socket hang up' });
    expect(outcomeOf('plain string')).toEqual({ kind: 'retry', reason: 'plain string' });
  });
});
