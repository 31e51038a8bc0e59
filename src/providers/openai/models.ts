import { z } from 'zod';
import { ConfigError, type OpenAIModelSetting } from '../../config';
import { DEFAULT_MODELS, type ModelSpec } from '../../tasks/models';

const int = () => z.number().int();

/** Drop keys whose value is undefined, so optional inputs the client left out are not sent. */
function compact(o: Record<string, unknown>): Record<string, unknown> {
  return Object.fromEntries(Object.entries(o).filter(([, v]) => v !== undefined));
}

/** The chat completion body's fields (besides `model` and `stream`) for a prompt and its params. */
function toMessages(prompt: string, p: Record<string, unknown>): Record<string, unknown> {
  const system = typeof p.system_prompt === 'string' ? [{ role: 'system', content: p.system_prompt }] : [];
  return compact({
    messages: [...system, { role: 'user', content: prompt }],
    max_tokens: p.max_tokens,
    temperature: p.temperature,
    top_p: p.top_p,
  });
}

/**
 * The text models OPENAI_MODELS lists, each a chat completion on the endpoint. The parameters are
 * the ones every OpenAI-compatible server takes; those the client leaves out are not sent (the
 * server's defaults apply). A name another provider's model has is refused at start.
 */
export function openaiModels(settings: { baseUrl: string; models: OpenAIModelSetting[] }): ModelSpec[] {
  const host = new URL(settings.baseUrl).host;
  return settings.models.map(({ name, id }) => {
    if (DEFAULT_MODELS.some((m) => m.name === name))
      throw new ConfigError([
        `OPENAI_MODELS: ${name} is already a Replicate model's name; name it otherwise (${name}-oai=${id})`,
      ]);
    return {
      name,
      taskType: 'text_gen',
      provider: 'openai',
      providerModel: id,
      isDefault: false,
      description: `${id} by chat completions on the OpenAI-compatible endpoint at ${host}.`,
      params: z.strictObject({
        system_prompt: z.string().max(10_000).optional(),
        max_tokens: int().min(1).max(1_000_000).optional(),
        temperature: z.number().min(0).max(2).optional(),
        top_p: z.number().min(0).max(1).optional(),
      }),
      toProviderInput: toMessages,
      deadlineMs: 10 * 60_000,
      streams: true,
    } satisfies ModelSpec;
  });
}
