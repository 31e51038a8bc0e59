import { request } from 'undici';
import { parseProgress } from '../../src/providers/progress';
import { ProviderError, type ModelRef } from '../../src/providers/types';
import { ReplicateClient } from '../../src/providers/replicate/client';
import { SAFETY_ERROR, startStandin } from '../../src/providers/replicate/standin';
import { runToEnd, setup } from './helpers';

async function raw(
  url: string,
  init: { method?: string; token?: string | null; body?: unknown; headers?: Record<string, string> } = {},
) {
  const headers: Record<string, string> = { 'content-type': 'application/json', ...init.headers };
  if (init.token) headers.authorization = `Bearer ${init.token}`;
  const res = await request(url, {
    method: (init.method ?? 'GET') as 'GET',
    headers,
    body: init.body === undefined ? undefined : JSON.stringify(init.body),
  });
  const text = await res.body.text();
  return {
    status: res.statusCode,
    headers: res.headers,
    body: text ? (JSON.parse(text) as Record<string, any>) : null,
  };
}

describe('stand-in validation (as Replicate answers)', () => {
  it('422s bad inputs with detail lines and invalid_fields', async () => {
    const { standin, close } = await setup();
    try {
      const post = (model: string, body: unknown) =>
        raw(`${standin.url}/models/${model}/predictions`, { method: 'POST', token: standin.token, body });
      const r1 = await post('bytedance/seedream-3', { input: { guidance_scale: 11, seed: 'x', width: 100 } });
      expect(r1.status).toBe(422);
      expect(r1.headers['content-type']).toBe('application/problem+json');
      expect(r1.body).toEqual({
        title: 'Input validation failed',
        detail:
          '- input: prompt is required\n- input.guidance_scale: Must be less than or equal to 10\n' +
          '- input.seed: Invalid type. Expected: integer, given: string\n- input.width: Must be greater than or equal to 512\n',
        status: 422,
        invalid_fields: [
          { type: 'required', field: 'input', description: 'prompt is required' },
          { type: 'number_lte', field: 'input.guidance_scale', description: 'Must be less than or equal to 10' },
          { type: 'invalid_type', field: 'input.seed', description: 'Invalid type. Expected: integer, given: string' },
          { type: 'number_gte', field: 'input.width', description: 'Must be greater than or equal to 512' },
        ],
      });
      const r2 = await post('google/imagen-4-fast', { input: { prompt: 'x', seed: 1 }, extra: true });
      expect(r2.body!.invalid_fields).toEqual([
        { type: 'additional_property_not_allowed', field: '', description: 'Additional property extra is not allowed' },
      ]);
      const r3 = await post('google/imagen-4-fast', { input: { prompt: 'x', seed: 1 } });
      expect(r3.body!.invalid_fields).toEqual([
        {
          type: 'additional_property_not_allowed',
          field: 'input',
          description: 'Additional property seed is not allowed',
        },
      ]);
      const r4 = await post('google/gemini-2.5-flash', {
        input: { prompt: 'x', images: ['not a url'] },
        webhook_events_filter: ['finished'],
      });
      expect(r4.body!.invalid_fields.map((f: { field: string }) => f.field)).toEqual([
        'input.images.0',
        'webhook_events_filter.0',
      ]);
      const r5 = await post('bytedance/seedance-1-pro', {
        input: { prompt: 'x', fps: 30, resolution: '4k', camera_fixed: 'yes' },
      });
      expect(r5.body!.invalid_fields.map((f: { type: string }) => f.type)).toEqual(['enum', 'enum', 'invalid_type']);
      const r6 = await post('anthropic/claude-4-sonnet', { input: { prompt: 'x', max_tokens: 100, temperature: 0.5 } });
      expect(r6.body!.invalid_fields.map((f: { type: string }) => f.type)).toEqual([
        'number_gte',
        'additional_property_not_allowed',
      ]);
      const r7 = await post('openai/gpt-4.1', {});
      expect(r7.body!.invalid_fields).toEqual([{ type: 'required', field: '', description: 'input is required' }]);
      const r8 = await post('google/gemini-2.5-flash-lite', { input: { prompt: 'x' } });
      expect(r8).toMatchObject({
        status: 404,
        body: { detail: 'The requested resource could not be found.', status: 404 },
      });
      expect(standin.predictions.size).toBe(0);
    } finally {
      await close();
    }
  });

  it('accepts POST /v1/predictions with an owner/name version, 422s an unknown version hash', async () => {
    const { standin, close } = await setup();
    try {
      const ok = await raw(`${standin.url}/predictions`, {
        method: 'POST',
        token: standin.token,
        body: { version: 'google/imagen-4-fast', input: { prompt: 'x' } },
      });
      expect(ok.status).toBe(201);
      expect(ok.body!.model).toBe('google/imagen-4-fast');
      const bad = await raw(`${standin.url}/predictions`, {
        method: 'POST',
        token: standin.token,
        body: { version: 'a'.repeat(64), input: { prompt: 'x' } },
      });
      expect(bad.body).toEqual({
        title: 'Invalid version or not permitted',
        detail: "The specified version does not exist (or perhaps you don't have permission to use it?)",
        status: 422,
      });
    } finally {
      await close();
    }
  });

  it('401s without a Bearer token, and records requests without the Authorization header', async () => {
    const { standin, close } = await setup();
    try {
      const r = await raw(`${standin.url}/predictions`, { token: null });
      expect(r).toMatchObject({
        status: 401,
        body: { title: 'Unauthenticated', detail: 'You did not pass a valid authentication token', status: 401 },
      });
      await raw(`${standin.url}/predictions`, { token: standin.token });
      expect(standin.requests.map((q) => [q.op, q.status, q.headers.authorization])).toEqual([
        ['list', 401, undefined],
        ['list', 200, undefined],
      ]);
    } finally {
      await close();
    }
  });

  it('serves the webhook secret, the model with its schema, and rate-limit headers', async () => {
    const { standin, close } = await setup();
    try {
      const s = await raw(`${standin.url}/webhooks/default/secret`, { token: standin.token });
      expect(s.body).toEqual({ key: standin.webhookSecret });
      expect(s.headers['ratelimit-remaining']).toBe('2999');
      const m = await raw(`${standin.url}/models/google/imagen-4-fast`, { token: standin.token });
      const schema = m.body!.latest_version.openapi_schema.components.schemas.Input;
      expect(schema.required).toEqual(['prompt']);
      expect(schema.properties.aspect_ratio.enum).toEqual(['1:1', '9:16', '16:9', '3:4', '4:3']);
    } finally {
      await close();
    }
  });
});

describe('stand-in lifecycle', () => {
  it('fails after 201 with "Prediction input failed validation" (model-side check)', async () => {
    const { standin, client, close } = await setup();
    try {
      const p = await client.create({ model: 'openai/gpt-4.1', input: { system_prompt: 'no prompt, no messages' } });
      expect(p.status).toBe('starting');
      const last = (await runToEnd(standin, client, p.id)).pop()!;
      expect(last.status).toBe('failed');
      expect(last.error).toMatch(/^Prediction input failed validation: /);
    } finally {
      await close();
    }
  });

  it('fails Imagen with the safety-filter error, and scripted failures', async () => {
    const { standin, client, close } = await setup();
    try {
      standin.faults.nextOutcome({ type: 'safety' }, 'google/imagen-4-fast');
      standin.faults.nextOutcome({ type: 'fail', error: 'boom' }, 'bytedance/seedream-3');
      const a = await client.create({ model: 'google/imagen-4-fast', input: { prompt: 'x' } });
      const b = await client.create({ model: 'bytedance/seedream-3', input: { prompt: 'x' } });
      const c = await client.create({ model: 'google/imagen-4-fast', input: { prompt: 'x' } });
      await standin.advance(30_000, { stepMs: 1000 });
      expect(await client.get(a.id)).toMatchObject({ status: 'failed', error: SAFETY_ERROR, output: null });
      expect(await client.get(b.id)).toMatchObject({ status: 'failed', error: 'boom' });
      expect((await client.get(c.id)).status).toBe('succeeded');
      // Prompt markers, for trying failures by hand in demo mode.
      const d = await client.create({ model: 'openai/gpt-4.1', input: { prompt: 'please [[fail]]' } });
      const e = await client.create({ model: 'bytedance/seedream-3', input: { prompt: 'x [[unsafe]]' } });
      await standin.advance(30_000, { stepMs: 1000 });
      expect((await client.get(d.id)).status).toBe('failed');
      expect((await client.get(e.id)).error).toBe(SAFETY_ERROR);
    } finally {
      await close();
    }
  });

  it('cancels running and queued predictions; cancel is idempotent', async () => {
    const { standin, client, close } = await setup();
    try {
      const queued = await client.create({ model: 'bytedance/seedance-1-pro', input: { prompt: 'x' } });
      const c1 = await client.cancel(queued.id);
      expect(c1).toMatchObject({ status: 'canceled', started_at: null, output: null });
      expect(c1.completed_at).not.toBeNull();
      await standin.advance(5000);
      const c2 = await client.cancel(queued.id);
      expect(c2.completed_at).toBe(c1.completed_at);

      const running = await client.create({ model: 'google/gemini-2.5-flash', input: { prompt: 'x' } });
      await standin.advance(2000);
      const c3 = await client.cancel(running.id);
      expect(c3.status).toBe('canceled');
      expect(c3.started_at).not.toBeNull();
      expect(Array.isArray(c3.output)).toBe(true);
      await standin.advance(60_000, { stepMs: 5000 });
      expect((await client.get(running.id)).status).toBe('canceled');

      const done = await client.create({ model: 'google/gemini-2.5-flash', input: { prompt: 'x' } });
      await standin.advance(60_000, { stepMs: 5000 });
      expect((await client.cancel(done.id)).status).toBe('succeeded');
    } finally {
      await close();
    }
  });

  it('Cancel-After: aborted before start, canceled while running, with a deadline field', async () => {
    const { standin, client, close } = await setup();
    try {
      const a = await client.create({ model: 'bytedance/seedance-1-pro', input: { prompt: 'x' }, cancelAfter: '1s' });
      const b = await client.create({ model: 'bytedance/seedance-1-pro', input: { prompt: 'x' }, cancelAfter: '10s' });
      expect(a.deadline).not.toBeNull();
      await standin.advance(120_000, { stepMs: 2000 });
      expect(await client.get(a.id)).toMatchObject({ status: 'aborted', started_at: null });
      expect((await client.get(b.id)).status).toBe('canceled');
    } finally {
      await close();
    }
  });

  it('a second progress bar starts again at 0 % (seedance)', async () => {
    const { standin, client, close } = await setup();
    try {
      const p = await client.create({ model: 'bytedance/seedance-1-pro', input: { prompt: 'x' } });
      const seen = await runToEnd(standin, client, p.id, 1000);
      const percents = seen.map((s) => parseProgress(s.logs).percent).filter((x): x is number => x !== null);
      const firstFull = percents.indexOf(100);
      expect(firstFull).toBeGreaterThan(0);
      expect(percents[firstFull + 1]).toBe(100); // the first bar sits at 100 % ...
      expect(Math.min(...percents.slice(firstFull))).toBe(0); // ... then the second starts at 0 %
      expect(percents[percents.length - 1]).toBe(100);
    } finally {
      await close();
    }
  });

  it('removes data after the TTL: output null, file 404, openOutput says expired', async () => {
    const { standin, client, close } = await setup({ dataTtlMs: 60_000 });
    try {
      const p = await client.create({ model: 'google/imagen-4-fast', input: { prompt: 'x' } });
      const done = (await runToEnd(standin, client, p.id)).pop()!;
      const url = done.output as string;
      const file = await client.openOutput(url);
      expect(file.contentType).toBe('image/jpeg');
      let n = 0;
      for await (const chunk of file.body) n += chunk.length;
      expect(n).toBe(file.contentLength);
      await standin.advance(61_000, { stepMs: 61_000 });
      const later = await client.get(p.id);
      expect(later).toMatchObject({ data_removed: true, output: null, logs: null, input: {}, status: 'succeeded' });
      const e = await client.openOutput(url).catch((err: unknown) => err);
      expect(e).toBeInstanceOf(ProviderError);
      expect((e as ProviderError).kind).toBe('permanent');
      expect((e as ProviderError).status).toBe(404);
      expect((e as ProviderError).detail).toBe('output expired');
    } finally {
      await close();
    }
  });

  it('lists newest first with cursor paging and created_after', async () => {
    const { client, close } = await setup({ listPageSize: 2 });
    try {
      const ids: string[] = [];
      let cut = new Date();
      for (let i = 0; i < 5; i++) {
        if (i === 3) cut = new Date();
        ids.push((await client.create({ model: 'google/imagen-4-fast', input: { prompt: `p${i}` } })).id);
        await new Promise((r) => setTimeout(r, 5)); // created_at follows wall time
      }
      const got: string[] = [];
      let page = await client.listPredictions();
      got.push(...page.results.map((r) => r.id));
      while (page.next) {
        page = await client.listPredictions({ url: page.next });
        got.push(...page.results.map((r) => r.id));
      }
      expect(got).toEqual([...ids].reverse());
      const recent = await client.listPredictions({ createdAfter: cut });
      expect(recent.results.map((r) => r.id)).toEqual([ids[4], ids[3]]);
    } finally {
      await close();
    }
  });
});

describe('sync mode (Prefer: wait)', () => {
  it('holds the create until the prediction finishes', async () => {
    const { standin, client, close } = await setup();
    try {
      let settled = false;
      const pending = client
        .create({ model: 'google/gemini-2.5-flash', input: { prompt: 'x' }, wait: 30 })
        .finally(() => (settled = true));
      for (let i = 0; i < 100 && !settled; i++) await standin.advance(500);
      const p = await pending;
      expect(p.status).toBe('succeeded');
      expect(standin.creates()[0]!.headers.prefer).toBe('wait=30');
    } finally {
      await close();
    }
  });

  it('answers with the current state when the wait runs out, echoing Preference-Applied and Location', async () => {
    const { standin, close } = await setup();
    try {
      const pending = raw(`${standin.url}/models/bytedance/seedance-1-pro/predictions`, {
        method: 'POST',
        token: standin.token,
        body: { input: { prompt: 'x' } },
        headers: { prefer: 'wait=2' },
      });
      let r: Awaited<typeof pending> | null = null;
      void pending.then((x) => (r = x));
      for (let i = 0; i < 100 && r === null; i++) await standin.advance(250);
      const res = await pending;
      expect(res.status).toBe(201);
      expect(res.headers['preference-applied']).toBe('wait=2');
      expect(res.headers.location).toBe(`${standin.url}/predictions/${res.body!.id}`);
      expect(res.body!.status).toBe('starting');
    } finally {
      await close();
    }
  });

  it('returns a file model as soon as its file exists, status still processing', async () => {
    const { standin, client, close } = await setup();
    try {
      standin.faults.apply({ timelines: { 'google/imagen-4-fast': { outputEarlyMs: 1000 } } });
      let settled = false;
      const pending = client
        .create({ model: 'google/imagen-4-fast', input: { prompt: 'x' }, wait: true })
        .finally(() => (settled = true));
      for (let i = 0; i < 100 && !settled; i++) await standin.advance(250);
      const p = await pending;
      expect(p.status).toBe('processing');
      expect(typeof p.output).toBe('string');
    } finally {
      await close();
    }
  });
});

describe('admin API and presets', () => {
  it('drives the clock and faults over HTTP and reports requests', async () => {
    const { standin, client, close } = await setup();
    try {
      const admin = `${standin.origin}/__admin`;
      const p = await client.create({ model: 'openai/gpt-4.1', input: { prompt: 'x' } });
      await raw(`${admin}/faults/inject`, {
        method: 'POST',
        body: { op: 'get', times: 2, action: { kind: 'status', status: 503 } },
      });
      await raw(`${admin}/clock/advance`, { method: 'POST', body: { ms: 60_000 } });
      expect((await client.get(p.id)).status).toBe('succeeded');
      const reqs = await raw(`${admin}/requests?op=get`);
      expect((reqs.body as unknown as Array<{ status: number }>).map((r) => r.status)).toEqual([503, 503, 200]);
      await raw(`${admin}/faults`, { method: 'POST', body: { noCredit: true } });
      const e = await client
        .create({ model: 'openai/gpt-4.1', input: { prompt: 'x' } })
        .catch((err: ProviderError) => err);
      expect((e as ProviderError).status).toBe(402);
      await raw(`${admin}/reset`, { method: 'POST' });
      expect(standin.requests).toHaveLength(0);
      expect(standin.faults.noCredit).toBe(false);
    } finally {
      await close();
    }
  });

  it('a text timeline with tokens streams that many, evenly over processingMs; bad tokens are a 400', async () => {
    const { standin, client, close } = await setup();
    try {
      const admin = `${standin.origin}/__admin`;
      const set = await raw(`${admin}/faults`, {
        method: 'POST',
        body: { timelines: { 'openai/gpt-4.1': { queueMs: 0, processingMs: 10_000, tokens: 500 } } },
      });
      expect(set.status).toBe(200);
      const p = await client.create({ model: 'openai/gpt-4.1', input: { prompt: 'long' } });
      // 50 tokens a second: 2 s into processing, 100 tokens are out.
      await standin.advance(2000);
      const mid = await client.get(p.id);
      expect(mid.status).toBe('processing');
      expect(mid.output as string[]).toHaveLength(100);
      await standin.advance(8000);
      const end = await client.get(p.id);
      expect(end.status).toBe('succeeded');
      const tokens = end.output as string[];
      expect(tokens).toHaveLength(500);
      expect(tokens.slice(0, 100)).toEqual(mid.output);
      expect(end.metrics?.output_token_count).toBe(500);
      // The stream carries the same 500 tokens.
      const out: string[] = [];
      await client.stream(end.urls.stream!, {
        onEvent: (e) => {
          if (e.event === 'output') out.push(e.data);
        },
      });
      expect(out.join('')).toBe(tokens.join(''));
      // Without tokens, the reply is today's short one.
      const short = await client.create({ model: 'google/gemini-2.5-flash', input: { prompt: 'long' } });
      await standin.advance(60_000);
      expect(((await client.get(short.id)).output as string[]).length).toBeLessThan(100);

      const bad = await raw(`${admin}/faults`, {
        method: 'POST',
        body: { timelines: { 'openai/gpt-4.1': { tokens: 0 } } },
      });
      expect(bad.status).toBe(400);
      expect(bad.body!.detail).toContain('timelines["openai/gpt-4.1"].tokens must be an integer from 1');
      expect(standin.faults.timelines['openai/gpt-4.1']!.tokens).toBe(500);
    } finally {
      await close();
    }
  });

  it('a real clock with a speed factor runs the realistic timelines fast', async () => {
    const standin = await startStandin({ clock: { speed: 60 } });
    const client = new ReplicateClient({ token: standin.token, baseUrl: standin.url });
    try {
      const p = await client.create({ model: 'bytedance/seedance-1-pro', input: { prompt: 'x' } }); // ~48 s simulated
      let last = p;
      for (let i = 0; i < 200 && last.status !== 'succeeded'; i++) {
        await new Promise((r) => setTimeout(r, 50));
        last = await client.get(p.id);
      }
      expect(last.status).toBe('succeeded');
      expect(last.metrics?.predict_time).toBe(45);
    } finally {
      await client.close();
      await standin.close();
    }
  });

  it('delayed answers and slow files still arrive', async () => {
    const { standin, client, close } = await setup();
    try {
      const p = await client.create({ model: 'google/imagen-4-fast', input: { prompt: 'x', output_format: 'png' } });
      standin.faults.inject({ op: 'get', action: { kind: 'delay', ms: 100 } });
      expect((await client.get(p.id)).id).toBe(p.id);
      await standin.advance(10_000, { stepMs: 1000 });
      const url = (await client.get(p.id)).output as string;
      standin.faults.inject({ op: 'file', action: { kind: 'slow_body', ms: 100 } });
      const f = await client.openOutput(url);
      const chunks: Buffer[] = [];
      for await (const c of f.body) chunks.push(Buffer.from(c));
      expect(Buffer.concat(chunks).subarray(1, 4).toString()).toBe('PNG');
      expect(standin.requests.filter((r) => r.fault !== null).map((r) => [r.op, r.fault])).toEqual([
        ['get', 'delay'],
        ['file', 'slow_body'],
      ]);
    } finally {
      await close();
    }
  });

  it('demo preset: real time, a task ends within seconds', async () => {
    const standin = await startStandin({ preset: 'demo' });
    const client = new ReplicateClient({ token: standin.token, baseUrl: standin.url });
    try {
      expect(standin.clock.kind).toBe('real');
      const model: ModelRef = 'google/gemini-2.5-flash';
      const p = await client.create({ model, input: { prompt: 'demo' } });
      let last = p;
      for (let i = 0; i < 100 && last.status !== 'succeeded'; i++) {
        await new Promise((r) => setTimeout(r, 100));
        last = await client.get(p.id);
      }
      expect(last.status).toBe('succeeded');
    } finally {
      await client.close();
      await standin.close();
    }
  });
});
