import { request } from 'undici';
import { normalizeOutput, parseProgress } from '../../src/providers/progress';
import type { ModelRef } from '../../src/providers/types';
import { runToEnd, setup } from './helpers';

const CASES: Array<{
  model: ModelRef;
  kind: 'image' | 'video' | 'text';
  input: Record<string, unknown>;
  contentType?: string;
  progress: 'bar' | 'none';
}> = [
  {
    model: 'google/imagen-4-fast',
    kind: 'image',
    input: { prompt: 'a red fox', aspect_ratio: '16:9', output_format: 'png' },
    contentType: 'image/png',
    progress: 'none',
  },
  {
    model: 'bytedance/seedream-3',
    kind: 'image',
    input: { prompt: 'a lighthouse', size: 'small', guidance_scale: 3 },
    contentType: 'image/jpeg',
    progress: 'bar',
  },
  {
    model: 'bytedance/seedance-1-pro',
    kind: 'video',
    input: { prompt: 'waves', duration: 5, resolution: '480p' },
    contentType: 'video/mp4',
    progress: 'bar',
  },
  { model: 'openai/gpt-4.1', kind: 'text', input: { prompt: 'hello', max_completion_tokens: 100 }, progress: 'none' },
  { model: 'anthropic/claude-4-sonnet', kind: 'text', input: { prompt: 'hello', max_tokens: 2048 }, progress: 'none' },
  { model: 'google/gemini-2.5-flash', kind: 'text', input: { prompt: 'hello', temperature: 0.5 }, progress: 'none' },
];

describe('each model runs to succeeded through the client', () => {
  it.each(CASES)('$model', async ({ model, kind, input, contentType, progress }) => {
    const { standin, client, close } = await setup();
    try {
      const created = await client.create({ model, input });
      expect(created.status).toBe('starting');
      expect(created.model).toBe(model);
      expect(created.version).toBe('hidden');
      expect(created.id).toMatch(/^[a-z0-9]{26}$/);
      expect(created.logs).toBe('');
      expect(created.output).toBeNull();
      expect(created.urls.get).toBe(`${standin.url}/predictions/${created.id}`);
      expect(Boolean(created.urls.stream)).toBe(kind === 'text');

      const seen = await runToEnd(standin, client, created.id);
      const last = seen[seen.length - 1]!;
      expect(last.status).toBe('succeeded');
      expect(seen.some((p) => p.status === 'processing')).toBe(true);
      expect(last.started_at).not.toBeNull();
      expect(last.completed_at).not.toBeNull();
      expect(typeof last.metrics?.predict_time).toBe('number');
      expect(typeof last.metrics?.total_time).toBe('number');

      const percents = seen.map((p) => parseProgress(p.logs).percent);
      if (progress === 'none') expect(percents.every((p) => p === null)).toBe(true);
      else {
        expect(percents.filter((p) => p !== null).length).toBeGreaterThan(2);
        expect(percents[percents.length - 1]).toBe(100);
      }

      if (kind === 'text') {
        const out = normalizeOutput('text', last.output);
        expect(out?.text).toContain('You asked: "hello"');
        // Output grows while processing.
        const partial = seen.find((p) => p.status === 'processing' && Array.isArray(p.output));
        expect(partial).toBeDefined();
      } else {
        const out = normalizeOutput(kind, last.output);
        expect(out?.urls).toHaveLength(1);
        const res = await request(out!.urls[0]!);
        expect(res.statusCode).toBe(200);
        expect(res.headers['content-type']).toBe(contentType);
        const bytes = Buffer.from(await res.body.arrayBuffer());
        if (contentType === 'image/png') expect(bytes.subarray(1, 4).toString()).toBe('PNG');
        if (contentType === 'image/jpeg') expect(bytes[0]).toBe(0xff);
        if (contentType === 'video/mp4') expect(bytes.subarray(4, 8).toString()).toBe('ftyp');
      }
      expect(standin.creates()).toHaveLength(1);
      expect(standin.creates()[0]!.path).toBe(`/v1/models/${model}/predictions`);
      expect(standin.creates()[0]!.headers.authorization).toBeUndefined();
    } finally {
      await close();
    }
  });
});
