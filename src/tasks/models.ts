import { z } from 'zod';
import { kindOf, TASK_TYPES, type TaskType } from './events';

/** What a task produces: the kinds table is in events.ts. */
export { TASK_TYPES, type TaskType };

/** The longest prompt accepted, in characters (documented in docs/api.md). */
export const MAX_PROMPT_CHARS = 10_000;

export interface ModelSpec {
  /** The name clients use (`model` in input_data). */
  name: string;
  taskType: TaskType;
  /** The provider it runs on: a registered provider's id (`replicate`, `openai`). */
  provider: string;
  /** The provider's model, `owner/name` on Replicate. */
  providerModel: string;
  isDefault: boolean;
  description: string;
  /** The parameters a client may send besides `prompt`, in the client's names, with defaults. */
  params: z.ZodObject;
  /** Maps the validated prompt + params onto the provider's own input names. */
  toProviderInput(prompt: string, params: Record<string, unknown>): Record<string, unknown>;
  /** A budget for one run; past it the prediction is canceled. */
  deadlineMs: number;
  /** Whether the provider streams output tokens (text models). */
  streams: boolean;
  /** JSON Schema keywords for rules between parameters that zod's refine carries but toJSONSchema drops. */
  jsonSchemaRules?: Record<string, unknown>;
}

const int = () => z.number().int();
const url = () => z.url({ protocol: /^https?$/, error: 'must be an http(s) URL' });

const passThrough = (prompt: string, params: Record<string, unknown>) => ({ prompt, ...params });

/** Drop keys whose value is undefined, so optional inputs the client left out are not sent. */
function compact(o: Record<string, unknown>): Record<string, unknown> {
  return Object.fromEntries(Object.entries(o).filter(([, v]) => v !== undefined));
}

const imagen4Fast: ModelSpec = {
  name: 'google/imagen-4-fast',
  taskType: 'image_gen',
  provider: 'replicate',
  providerModel: 'google/imagen-4-fast',
  isDefault: true,
  description: "Google's Imagen 4, fast variant: quick, cheap, good prompt adherence.",
  params: z.strictObject({
    aspect_ratio: z.enum(['1:1', '9:16', '16:9', '3:4', '4:3']).default('1:1'),
    output_format: z.enum(['jpg', 'png']).default('jpg'),
    safety_filter_level: z
      .enum(['block_low_and_above', 'block_medium_and_above', 'block_only_high'])
      .default('block_only_high'),
  }),
  toProviderInput: passThrough,
  deadlineMs: 5 * 60_000,
  streams: false,
};

const seedream3: ModelSpec = {
  name: 'bytedance/seedream-3',
  taskType: 'image_gen',
  provider: 'replicate',
  providerModel: 'bytedance/seedream-3',
  isDefault: false,
  description: "ByteDance's Seedream 3: text-to-image up to 2048 px, custom sizes.",
  params: z
    .strictObject({
      aspect_ratio: z.enum(['1:1', '3:4', '4:3', '16:9', '9:16', '2:3', '3:2', '21:9', 'custom']).default('16:9'),
      size: z.enum(['small', 'regular', 'big']).default('regular'),
      // Seedream uses a size only with aspect_ratio "custom" (the provider defaults it to 2048 then);
      // a size with another ratio would be ignored without a word, so it is refused.
      width: int().min(512).max(2048).optional().describe('only with aspect_ratio "custom" (then 2048 if not given)'),
      height: int().min(512).max(2048).optional().describe('only with aspect_ratio "custom" (then 2048 if not given)'),
      guidance_scale: z.number().min(1).max(10).default(2.5),
      seed: int().optional(),
    })
    .superRefine((p, ctx) => {
      for (const k of ['width', 'height'] as const) {
        if (p[k] !== undefined && p.aspect_ratio !== 'custom')
          ctx.addIssue({ code: 'custom', path: [k], message: 'is only used with aspect_ratio "custom"' });
      }
    }),
  toProviderInput: (prompt, params) => compact({ prompt, ...params }),
  deadlineMs: 5 * 60_000,
  streams: false,
  jsonSchemaRules: {
    if: { properties: { aspect_ratio: { not: { const: 'custom' } } } },
    then: { not: { anyOf: [{ required: ['width'] }, { required: ['height'] }] } },
  },
};

const seedance1Pro: ModelSpec = {
  name: 'bytedance/seedance-1-pro',
  taskType: 'video_gen',
  provider: 'replicate',
  providerModel: 'bytedance/seedance-1-pro',
  isDefault: true,
  description: "ByteDance's Seedance 1 Pro: text- or image-to-video, 2 to 12 s, up to 1080p.",
  params: z
    .strictObject({
      image: url().optional(),
      last_frame_image: url().optional(),
      duration: int().min(2).max(12).default(5),
      resolution: z.enum(['480p', '720p', '1080p']).default('1080p'),
      aspect_ratio: z.enum(['16:9', '4:3', '1:1', '3:4', '9:16', '21:9', '9:21']).default('16:9'),
      fps: z.literal(24).default(24),
      camera_fixed: z.boolean().default(false),
      seed: int().optional(),
    })
    .refine((p) => p.last_frame_image === undefined || p.image !== undefined, {
      path: ['last_frame_image'],
      message: 'is only allowed together with image',
    }),
  toProviderInput: (prompt, params) => compact({ prompt, ...params }),
  deadlineMs: 15 * 60_000,
  streams: false,
  jsonSchemaRules: { dependentRequired: { last_frame_image: ['image'] } },
};

const gpt41: ModelSpec = {
  name: 'gpt-4.1',
  taskType: 'text_gen',
  provider: 'replicate',
  providerModel: 'openai/gpt-4.1',
  isDefault: true,
  description: "OpenAI's GPT-4.1: the default text model (confirmed on Replicate, with a stable schema).",
  params: z.strictObject({
    system_prompt: z.string().max(10_000).optional(),
    max_tokens: int().min(1).max(32_768).default(4096),
    temperature: z.number().min(0).max(2).default(1),
    top_p: z.number().min(0).max(1).default(1),
    images: z.array(url()).max(10).default([]),
    frequency_penalty: z.number().min(-2).max(2).default(0),
    presence_penalty: z.number().min(-2).max(2).default(0),
  }),
  toProviderInput: (prompt, p) =>
    compact({
      prompt,
      system_prompt: p.system_prompt,
      max_completion_tokens: p.max_tokens,
      temperature: p.temperature,
      top_p: p.top_p,
      image_input: p.images,
      frequency_penalty: p.frequency_penalty,
      presence_penalty: p.presence_penalty,
    }),
  deadlineMs: 5 * 60_000,
  streams: true,
};

const claudeSonnet4: ModelSpec = {
  name: 'claude-sonnet-4-20250514',
  taskType: 'text_gen',
  provider: 'replicate',
  providerModel: 'anthropic/claude-4-sonnet',
  isDefault: false,
  description: "Anthropic's Claude Sonnet 4 (Replicate: anthropic/claude-4-sonnet). No temperature.",
  params: z.strictObject({
    system_prompt: z.string().max(10_000).optional(),
    max_tokens: int().min(1024).max(64_000).default(8192),
    images: z.array(url()).max(1).default([]),
    max_image_resolution: z.number().min(0.001).max(2).default(0.5),
    extended_thinking: z.boolean().default(false),
    thinking_budget_tokens: int().min(1024).max(64_000).default(1024),
  }),
  toProviderInput: (prompt, p) =>
    compact({
      prompt,
      system_prompt: p.system_prompt,
      max_tokens: p.max_tokens,
      image: (p.images as string[])[0],
      max_image_resolution: p.max_image_resolution,
      extended_thinking: p.extended_thinking,
      thinking_budget_tokens: p.thinking_budget_tokens,
    }),
  deadlineMs: 10 * 60_000,
  streams: true,
};

const geminiFlashLite: ModelSpec = {
  name: 'gemini-2.5-flash-lite',
  taskType: 'text_gen',
  provider: 'replicate',
  // Replicate hosts google/gemini-2.5-flash; flash-lite could not be confirmed there.
  providerModel: 'google/gemini-2.5-flash',
  isDefault: false,
  description: "Google's Gemini 2.5 Flash family (runs as google/gemini-2.5-flash on Replicate).",
  params: z.strictObject({
    system_prompt: z.string().max(10_000).optional(),
    max_tokens: int().min(1).max(65_535).default(65_535),
    temperature: z.number().min(0).max(2).default(1),
    top_p: z.number().min(0).max(1).default(0.95),
    images: z.array(url()).max(10).default([]),
    thinking_budget: int().min(0).max(24_576).optional(),
    dynamic_thinking: z.boolean().default(false),
  }),
  toProviderInput: (prompt, p) =>
    compact({
      prompt,
      system_instruction: p.system_prompt,
      max_output_tokens: p.max_tokens,
      temperature: p.temperature,
      top_p: p.top_p,
      images: p.images,
      thinking_budget: p.thinking_budget,
      dynamic_thinking: p.dynamic_thinking,
    }),
  deadlineMs: 5 * 60_000,
  streams: true,
};

/** The model registry: which models exist, which is the default per task type. */
export class ModelRegistry {
  private readonly byName = new Map<string, ModelSpec>();

  constructor(readonly models: readonly ModelSpec[] = DEFAULT_MODELS) {
    // The provider's name (`provider_model` in GET /api/models) is an alias; names win over aliases.
    for (const m of models) if (!this.byName.has(m.providerModel)) this.byName.set(m.providerModel, m);
    const names = new Map<string, ModelSpec>();
    for (const m of models) {
      const other = names.get(m.name);
      if (other)
        throw new Error(`model registry: ${m.name} is served by both ${other.provider} and ${m.provider}; rename one`);
      names.set(m.name, m);
    }
    for (const m of models) this.byName.set(m.name, m);
    for (const t of TASK_TYPES) {
      const defaults = models.filter((m) => m.taskType === t && m.isDefault);
      if (defaults.length !== 1)
        throw new Error(`model registry: ${t} needs exactly one default, has ${defaults.length}`);
    }
  }

  get(name: string): ModelSpec | undefined {
    return this.byName.get(name);
  }

  defaultFor(taskType: TaskType): ModelSpec {
    return this.models.find((m) => m.taskType === taskType && m.isDefault)!;
  }

  /** The registry as `GET /api/models` serves it: JSON Schema of each model's inputs. */
  describe() {
    return this.models.map((m) => ({
      name: m.name,
      task_type: m.taskType,
      type: kindOf(m.taskType).kind,
      output: kindOf(m.taskType).output,
      provider: m.provider,
      provider_model: m.providerModel,
      default: m.isDefault,
      description: m.description,
      streams: m.streams,
      input_schema: inputJsonSchema(m),
    }));
  }
}

/** The model's full input (prompt + params) as JSON Schema. */
export function inputJsonSchema(m: ModelSpec): Record<string, unknown> {
  const params = z.toJSONSchema(m.params, { io: 'input', unrepresentable: 'any' }) as {
    properties?: Record<string, unknown>;
    required?: string[];
  };
  return {
    type: 'object',
    properties: {
      prompt: { type: 'string', minLength: 1, maxLength: MAX_PROMPT_CHARS },
      ...(params.properties ?? {}),
    },
    required: ['prompt'],
    additionalProperties: false,
    ...(m.jsonSchemaRules ?? {}),
  };
}

export const DEFAULT_MODELS: readonly ModelSpec[] = [
  imagen4Fast,
  seedream3,
  seedance1Pro,
  gpt41,
  claudeSonnet4,
  geminiFlashLite,
];
