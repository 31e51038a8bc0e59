/**
 * The six models the stand-in knows, with input schemas as reference §F gives them, and how each
 * behaves over time (queue delay, processing time, what it logs, what it outputs).
 *
 * These schemas belong to the fake Replicate, not to pyre: pyre's own model registry maps its
 * inputs to these names, and the stand-in checks that mapping the way Replicate would.
 */

export type FieldSpec =
  | { type: 'string'; enum?: readonly string[]; default?: string }
  | { type: 'uri' }
  | { type: 'integer' | 'number'; minimum?: number; maximum?: number; enum?: readonly number[]; default?: number }
  | { type: 'boolean'; default?: boolean }
  | { type: 'array'; items: 'uri' | 'message'; maxItems?: number; default?: readonly unknown[] };

export type OutputKind = 'image' | 'video' | 'text';

/** How a model's logs show progress: none, one tqdm bar, or two (the second starts again at 0 %). */
export type ProgressStyle = 'none' | 'one-bar' | 'two-bars';

export interface Timeline {
  /** Time in `starting` (queued / booting). */
  queueMs: number;
  /** Time in `processing` before the terminal state. */
  processingMs: number;
  /** File models: output present this long before `succeeded` (the sync-mode "files ready" case). */
  outputEarlyMs?: number;
  /**
   * Text models: the reply's length in tokens, spread evenly over `processingMs` (so
   * `{ processingMs: 10000, tokens: 500 }` streams 50 tokens a second). Default: the short reply.
   */
  tokens?: number;
}

export interface StandinModel {
  ref: string;
  kind: OutputKind;
  description: string;
  fields: Record<string, FieldSpec>;
  required: readonly string[];
  timeline: Timeline;
  progress: ProgressStyle;
  steps: number;
  /** Plain log lines: before any bar, and after success. */
  prelude(input: Record<string, unknown>): string[];
  epilogue(input: Record<string, unknown>, tokens: number): string[];
  /** A check the "model container" makes after the API accepted the input (fails after 201). */
  lateCheck?(input: Record<string, unknown>): string | null;
  /** File models: which file. */
  file?(input: Record<string, unknown>): 'png' | 'jpg' | 'mp4';
}

const IMAGEN_RATIOS = ['1:1', '9:16', '16:9', '3:4', '4:3'] as const;

export const STANDIN_MODELS: Record<string, StandinModel> = {
  'google/imagen-4-fast': {
    ref: 'google/imagen-4-fast',
    kind: 'image',
    description: 'Use this fast version of Imagen 4 when speed and cost are more important than quality',
    fields: {
      prompt: { type: 'string' },
      aspect_ratio: { type: 'string', enum: IMAGEN_RATIOS, default: '1:1' },
      output_format: { type: 'string', enum: ['jpg', 'png'], default: 'jpg' },
      safety_filter_level: {
        type: 'string',
        enum: ['block_low_and_above', 'block_medium_and_above', 'block_only_high'],
        default: 'block_only_high',
      },
    },
    required: ['prompt'],
    timeline: { queueMs: 800, processingMs: 4000 },
    progress: 'none',
    steps: 0,
    prelude: () => ['Generating image with imagen-4-fast...'],
    epilogue: () => ['Generated image in 3.2sec'],
    file: (input) => (input.output_format === 'png' ? 'png' : 'jpg'),
  },
  'bytedance/seedream-3': {
    ref: 'bytedance/seedream-3',
    kind: 'image',
    description: 'A text-to-image model with support for native high-resolution (2K) image generation',
    fields: {
      prompt: { type: 'string' },
      aspect_ratio: {
        type: 'string',
        enum: ['1:1', '3:4', '4:3', '16:9', '9:16', '2:3', '3:2', '21:9', 'custom'],
        default: '16:9',
      },
      size: { type: 'string', enum: ['small', 'regular', 'big'], default: 'regular' },
      width: { type: 'integer', minimum: 512, maximum: 2048, default: 2048 },
      height: { type: 'integer', minimum: 512, maximum: 2048, default: 2048 },
      guidance_scale: { type: 'number', minimum: 1, maximum: 10, default: 2.5 },
      seed: { type: 'integer' },
    },
    required: ['prompt'],
    timeline: { queueMs: 1500, processingMs: 8000 },
    progress: 'one-bar',
    steps: 25,
    prelude: (input) => [`Using seed: ${typeof input.seed === 'number' ? input.seed : 7117}`, 'Generating image...'],
    epilogue: () => ['Image saved to output.jpg'],
    file: () => 'jpg',
  },
  'bytedance/seedance-1-pro': {
    ref: 'bytedance/seedance-1-pro',
    kind: 'video',
    description: 'A pro version of Seedance that offers text-to-video and image-to-video support for 5s or 10s videos',
    fields: {
      prompt: { type: 'string' },
      image: { type: 'uri' },
      last_frame_image: { type: 'uri' },
      duration: { type: 'integer', minimum: 2, maximum: 12, default: 5 },
      resolution: { type: 'string', enum: ['480p', '720p', '1080p'], default: '1080p' },
      aspect_ratio: { type: 'string', enum: ['16:9', '4:3', '1:1', '3:4', '9:16', '21:9', '9:21'], default: '16:9' },
      fps: { type: 'integer', enum: [24], default: 24 },
      camera_fixed: { type: 'boolean', default: false },
      seed: { type: 'integer' },
    },
    required: ['prompt'],
    timeline: { queueMs: 3000, processingMs: 45000 },
    progress: 'two-bars',
    steps: 30,
    prelude: (input) => [
      `Generating ${typeof input.duration === 'number' ? input.duration : 5}s video at ${typeof input.resolution === 'string' ? input.resolution : '1080p'}`,
      'Denoising...',
    ],
    epilogue: () => ['Video saved to output.mp4'],
    lateCheck: (input) =>
      input.last_frame_image !== undefined && input.image === undefined
        ? 'Prediction input failed validation: ' +
          '{"detail":[{"loc":["body","input","last_frame_image"],"msg":"last_frame_image requires image","type":"value_error"}]}'
        : null,
    file: () => 'mp4',
  },
  'openai/gpt-4.1': {
    ref: 'openai/gpt-4.1',
    kind: 'text',
    description: "OpenAI's Flagship GPT model for complex tasks.",
    fields: {
      prompt: { type: 'string' },
      system_prompt: { type: 'string' },
      messages: { type: 'array', items: 'message', default: [] },
      image_input: { type: 'array', items: 'uri', default: [] },
      temperature: { type: 'number', minimum: 0, maximum: 2, default: 1 },
      top_p: { type: 'number', minimum: 0, maximum: 1, default: 1 },
      max_completion_tokens: { type: 'integer', default: 4096 },
      frequency_penalty: { type: 'number', minimum: -2, maximum: 2, default: 0 },
      presence_penalty: { type: 'number', minimum: -2, maximum: 2, default: 0 },
    },
    required: [],
    timeline: { queueMs: 500, processingMs: 4000 },
    progress: 'none',
    steps: 0,
    prelude: () => [],
    epilogue: (_input, tokens) => [`Generated ${tokens} tokens`],
    lateCheck: (input) =>
      input.prompt === undefined && (!Array.isArray(input.messages) || input.messages.length === 0)
        ? 'Prediction input failed validation: {"detail":[{"loc":["body","input"],"msg":"Either prompt or messages must be provided","type":"value_error"}]}'
        : null,
  },
  'anthropic/claude-4-sonnet': {
    ref: 'anthropic/claude-4-sonnet',
    kind: 'text',
    description: 'Claude Sonnet 4 is a significant upgrade to 3.7 Sonnet, delivering superior coding and reasoning',
    fields: {
      prompt: { type: 'string' },
      system_prompt: { type: 'string', default: '' },
      image: { type: 'uri' },
      max_tokens: { type: 'integer', minimum: 1024, maximum: 64000, default: 8192 },
      max_image_resolution: { type: 'number', minimum: 0.001, maximum: 2, default: 0.5 },
      extended_thinking: { type: 'boolean', default: false },
      thinking_budget_tokens: { type: 'integer', minimum: 1024, maximum: 64000, default: 1024 },
    },
    required: ['prompt'],
    timeline: { queueMs: 800, processingMs: 5000 },
    progress: 'none',
    steps: 0,
    prelude: () => [],
    epilogue: (_input, tokens) => [`Input token count: 12`, `Output token count: ${tokens}`],
  },
  'google/gemini-2.5-flash': {
    ref: 'google/gemini-2.5-flash',
    kind: 'text',
    description: "Google's hybrid 'thinking' AI model optimized for speed and cost-efficiency",
    fields: {
      prompt: { type: 'string' },
      images: { type: 'array', items: 'uri', maxItems: 10, default: [] },
      videos: { type: 'array', items: 'uri', maxItems: 10, default: [] },
      system_instruction: { type: 'string' },
      temperature: { type: 'number', minimum: 0, maximum: 2, default: 1 },
      top_p: { type: 'number', minimum: 0, maximum: 1, default: 0.95 },
      max_output_tokens: { type: 'integer', minimum: 1, maximum: 65535, default: 65535 },
      thinking_budget: { type: 'integer', minimum: 0, maximum: 24576 },
      dynamic_thinking: { type: 'boolean', default: false },
    },
    required: ['prompt'],
    timeline: { queueMs: 500, processingMs: 3000 },
    progress: 'none',
    steps: 0,
    prelude: () => ['Generating text with gemini-2.5-flash...'],
    epilogue: (_input, tokens) => [`Total tokens: ${tokens + 12}`],
  },
};

/** Short timelines for demo mode: every task ends within a few seconds of real time. */
export const DEMO_TIMELINES: Record<string, Timeline> = {
  'google/imagen-4-fast': { queueMs: 400, processingMs: 2000 },
  'bytedance/seedream-3': { queueMs: 400, processingMs: 3000 },
  'bytedance/seedance-1-pro': { queueMs: 600, processingMs: 6000 },
  'openai/gpt-4.1': { queueMs: 300, processingMs: 3000 },
  'anthropic/claude-4-sonnet': { queueMs: 300, processingMs: 3500 },
  'google/gemini-2.5-flash': { queueMs: 300, processingMs: 2500 },
};

/**
 * Timelines for load tests (`minutes` preset): every prediction takes minutes, as videos do, so
 * that thousands are in flight at once. Real time.
 */
export const MINUTES_TIMELINES: Record<string, Timeline> = {
  'google/imagen-4-fast': { queueMs: 5000, processingMs: 60_000 },
  'bytedance/seedream-3': { queueMs: 5000, processingMs: 90_000 },
  'bytedance/seedance-1-pro': { queueMs: 10_000, processingMs: 170_000 },
  'openai/gpt-4.1': { queueMs: 2000, processingMs: 60_000 },
  'anthropic/claude-4-sonnet': { queueMs: 2000, processingMs: 60_000 },
  'google/gemini-2.5-flash': { queueMs: 2000, processingMs: 60_000 },
};

export interface InvalidField {
  type: string;
  field: string;
  description: string;
}

function typeName(v: unknown): string {
  if (v === null) return 'null';
  if (Array.isArray(v)) return 'array';
  if (typeof v === 'number') return Number.isInteger(v) ? 'integer' : 'number';
  return typeof v;
}

function isUri(v: unknown): boolean {
  if (typeof v !== 'string') return false;
  if (v.startsWith('data:')) return true;
  try {
    const u = new URL(v);
    return u.protocol === 'https:' || u.protocol === 'http:';
  } catch {
    return false;
  }
}

/**
 * Validates `input` like Replicate's API does (gojsonschema wording). Unknown input keys are
 * rejected: stricter than Replicate is known to be, on purpose, to catch mapping mistakes.
 */
export function validateInput(
  model: StandinModel,
  input: unknown,
  opts: { strictKeys?: boolean } = {},
): InvalidField[] {
  if (input === null || typeof input !== 'object' || Array.isArray(input)) {
    return [
      {
        type: 'invalid_type',
        field: 'input',
        description: `Invalid type. Expected: object, given: ${typeName(input)}`,
      },
    ];
  }
  const errs: InvalidField[] = [];
  const rec = input as Record<string, unknown>;
  for (const name of model.required) {
    if (rec[name] === undefined) errs.push({ type: 'required', field: 'input', description: `${name} is required` });
  }
  for (const [name, value] of Object.entries(rec)) {
    const spec = model.fields[name];
    if (spec) errs.push(...fieldProblems(name, spec, value));
    else if (opts.strictKeys !== false)
      errs.push({
        type: 'additional_property_not_allowed',
        field: 'input',
        description: `Additional property ${name} is not allowed`,
      });
  }
  return errs;
}

/** What is wrong with one declared input field's value: its type first, then format, enum, range, items. */
function fieldProblems(name: string, spec: FieldSpec, value: unknown): InvalidField[] {
  const field = `input.${name}`;
  const expected = spec.type === 'uri' ? 'string' : spec.type;
  const given = typeName(value);
  const typeOk =
    expected === 'number'
      ? typeof value === 'number' && Number.isFinite(value)
      : expected === 'integer'
        ? given === 'integer'
        : given === expected;
  if (!typeOk)
    return [{ type: 'invalid_type', field, description: `Invalid type. Expected: ${expected}, given: ${given}` }];
  const errs: InvalidField[] = [];
  if (spec.type === 'uri' && !isUri(value))
    errs.push({ type: 'format', field, description: "Does not match format 'uri'" });
  if (
    (spec.type === 'string' || spec.type === 'integer' || spec.type === 'number') &&
    spec.enum &&
    !(spec.enum as readonly unknown[]).includes(value)
  ) {
    errs.push({
      type: 'enum',
      field,
      description: `${name} must be one of the following: ${spec.enum.map((e) => JSON.stringify(e)).join(', ')}`,
    });
  }
  if (spec.type === 'integer' || spec.type === 'number') {
    const n = value as number;
    if (spec.minimum !== undefined && n < spec.minimum)
      errs.push({ type: 'number_gte', field, description: `Must be greater than or equal to ${spec.minimum}` });
    if (spec.maximum !== undefined && n > spec.maximum)
      errs.push({ type: 'number_lte', field, description: `Must be less than or equal to ${spec.maximum}` });
  }
  if (spec.type === 'array') errs.push(...arrayProblems(field, spec, value as unknown[]));
  return errs;
}

function arrayProblems(field: string, spec: Extract<FieldSpec, { type: 'array' }>, arr: unknown[]): InvalidField[] {
  const errs: InvalidField[] = [];
  if (spec.maxItems !== undefined && arr.length > spec.maxItems)
    errs.push({ type: 'array_max_items', field, description: `Array must have at most ${spec.maxItems} items` });
  arr.forEach((item, i) => {
    if (spec.items === 'uri' && !isUri(item))
      errs.push({ type: 'format', field: `${field}.${i}`, description: "Does not match format 'uri'" });
    if (spec.items === 'message') {
      const m = item as { role?: unknown; content?: unknown } | null;
      if (!m || typeof m !== 'object' || typeof m.role !== 'string' || m.content === undefined) {
        errs.push({
          type: 'invalid_type',
          field: `${field}.${i}`,
          description: 'Invalid type. Expected: object with role and content',
        });
      }
    }
  });
  return errs;
}

/** The model's input as a JSON schema, for GET /v1/models/{owner}/{name}. */
export function inputJsonSchema(model: StandinModel): Record<string, unknown> {
  const properties: Record<string, unknown> = {};
  let order = 0;
  for (const [name, spec] of Object.entries(model.fields)) {
    const p: Record<string, unknown> = { title: name, 'x-order': order++ };
    if (spec.type === 'uri') Object.assign(p, { type: 'string', format: 'uri' });
    else if (spec.type === 'array')
      Object.assign(p, {
        type: 'array',
        items: spec.items === 'uri' ? { type: 'string', format: 'uri' } : { type: 'object' },
      });
    else p.type = spec.type;
    for (const k of ['enum', 'default', 'minimum', 'maximum', 'maxItems'] as const) {
      const v = (spec as Record<string, unknown>)[k];
      if (v !== undefined) p[k] = v;
    }
    properties[name] = p;
  }
  return { type: 'object', title: 'Input', required: [...model.required], properties };
}
