import { parseProgress } from '../../src/providers/progress';
import { BACKENDS } from '../helpers/db';
import {
  call,
  createTask,
  createsFor,
  events,
  getTask,
  runToEnd,
  startRunnerEnv,
  waitFor,
  type RunnerEnv,
} from './helpers';

/**
 * Acceptance 1 and 2 of issue 4, from outside: each of the six models runs to `succeeded`
 * through the real Replicate client against the stand-in (real HTTP both ways); files are
 * served by pyre after the stand-in's own URLs expired; streamed text joins to the final
 * text; progress follows the stand-in's logs, and null stays null.
 */
describe.each(BACKENDS)('runner on %s: the six models', (backend) => {
  let env: RunnerEnv;
  const TTL_MS = 60_000;
  beforeAll(async () => {
    env = await startRunnerEnv({ backend, standin: { clock: 'virtual', dataTtlMs: TTL_MS } });
  });
  afterAll(() => env?.close());

  const FILE_MODELS = [
    { model: 'google/imagen-4-fast', type: 'image', contentType: 'image/jpeg', magic: [0xff, 0xd8, 0xff] },
    { model: 'bytedance/seedream-3', type: 'image', contentType: 'image/jpeg', magic: [0xff, 0xd8, 0xff] },
    { model: 'bytedance/seedance-1-pro', type: 'video', contentType: 'video/mp4', magic: null },
  ];

  it('image and video tasks end with files pyre serves after the stand-in expired its URLs', async () => {
    const ids: Record<string, string> = {};
    for (const m of FILE_MODELS)
      ids[m.model] = await createTask(env.url, { type: m.type, model: m.model, prompt: `files via ${m.model}` });
    const done: Record<string, any> = {};
    for (const m of FILE_MODELS) done[m.model] = await runToEnd(env, ids[m.model]!, { stepMs: 1000 });
    // Their URLs expire one TTL after completion: move the stand-in's clock past it.
    await env.standin.advance(TTL_MS + 1000, { stepMs: 5000 });

    for (const m of FILE_MODELS) {
      const t = done[m.model];
      expect(t).toMatchObject({ status: 'succeeded', model: m.model, progress: 100, error: null, attempts: 1 });
      expect(t.output.urls).toHaveLength(1);
      const ours: string = t.output.urls[0];
      expect(ours.startsWith(`${env.url}/files/${t.id}/`)).toBe(true);

      // The stand-in's own URL is gone now.
      const row = await env.gw.tasks.find(t.id);
      const theirs = (row!.provider_output as { urls: string[] }).urls[0]!;
      expect(theirs.startsWith(env.standin.origin)).toBe(true);
      expect((await fetch(theirs)).status).toBe(404);
      expect(env.standin.prediction(row!.prediction_id!)).toMatchObject({ data_removed: true, output: null });

      const res = await fetch(ours);
      expect(res.status).toBe(200);
      expect(res.headers.get('content-type')).toBe(m.contentType);
      const bytes = new Uint8Array(await res.arrayBuffer());
      expect(bytes.length).toBeGreaterThan(100);
      if (m.magic) expect([...bytes.slice(0, m.magic.length)]).toEqual(m.magic);
      else expect(Buffer.from(bytes.slice(4, 8)).toString('latin1')).toBe('ftyp');

      const ev = await events(env.url, t.id);
      const final = ev.filter((e) => e.event === `${m.type}_response`);
      expect(final).toHaveLength(1);
      expect(final[0].payload).toMatchObject({ status: 'success', output: { urls: [ours] } });
      // One create for each task.
      expect(createsFor(env.standin, `files via ${m.model}`)).toHaveLength(1);
    }
  });

  it.each([
    ['gpt-4.1', 'openai/gpt-4.1'],
    ['claude-sonnet-4-20250514', 'anthropic/claude-4-sonnet'],
    ['gemini-2.5-flash-lite', 'google/gemini-2.5-flash'],
  ])('%s streams text deltas that join to the final text', async (model, providerModel) => {
    const prompt = `say something, ${model}`;
    const id = await createTask(env.url, { type: 'text', model, prompt });
    const t = await runToEnd(env, id, { stepMs: 200 });
    expect(t).toMatchObject({ status: 'succeeded', model, error: null, attempts: 1 });
    const text: string = t.output.text;
    expect(text).toContain(`answering as ${providerModel}`);
    expect(text).toContain(`You asked: "${prompt}"`);

    const ev = await events(env.url, id);
    const deltas = ev.filter((e) => e.event === 'text_delta');
    // Streamed in several pieces, not one lump at the end.
    expect(deltas.length).toBeGreaterThan(3);
    expect(deltas.map((e) => e.payload.delta).join('')).toBe(text);
    const final = ev.filter((e) => e.event === 'text_response');
    expect(final).toHaveLength(1);
    expect(final[0].payload).toMatchObject({ status: 'success', output: { text } });
    // Deltas come before the end, and seq is gap-free.
    expect(ev.map((e) => e.seq)).toEqual(ev.map((_, i) => i + 1));
    expect(Math.max(...deltas.map((e) => e.seq))).toBeLessThan(final[0].seq);
    // The runner read the SSE stream the prediction advertised.
    const row = await env.gw.tasks.find(id);
    const urls = env.standin.prediction(row!.prediction_id!)!.urls as { stream: string };
    const streamPath = new URL(urls.stream).pathname;
    expect(env.standin.requests.some((r) => r.op === 'stream' && r.path === streamPath)).toBe(true);
  });

  /**
   * Steps the stand-in's clock and, after each step, waits until the task shows what the
   * stand-in's logs say now (parsed as the official clients parse them).
   */
  async function followProgress(id: string, stepMs: number): Promise<{ seen: Array<number | null>; task: any }> {
    const seen: Array<number | null> = [];
    const row = await waitFor('prediction id', async () => (await env.gw.tasks.find(id))?.prediction_id);
    let high: number | null = null;
    for (let i = 0; i < 400; i++) {
      const p = env.standin.prediction(row)!;
      if (p.status === 'succeeded') break;
      // What the task shows: the highest bar value so far (progress never goes back).
      const parsed = parseProgress(p.logs as string | null).percent;
      const expected: number | null = parsed === null ? high : Math.max(high ?? 0, Math.round(parsed));
      high = expected;
      const shown = await waitFor(
        `progress ${expected}`,
        async () => {
          const t = await getTask(env.url, id);
          return t.progress === expected ? { v: t.progress as number | null } : null;
        },
        10_000,
      );
      seen.push(shown.v);
      await env.standin.advance(stepMs, { stepMs });
    }
    return { seen, task: await runToEnd(env, id) };
  }

  it('progress events follow the stand-in logs and never go back (seedream: one bar; seedance: two bars)', async () => {
    const a = await createTask(env.url, { type: 'image', model: 'bytedance/seedream-3', prompt: 'progress one bar' });
    const one = await followProgress(a, 400);
    expect(one.task.status).toBe('succeeded');
    const numbers = one.seen.filter((v): v is number => v !== null);
    expect(numbers.length).toBeGreaterThan(5);
    expect(numbers).toEqual([...numbers].sort((x, y) => x - y)); // one bar: never goes back

    const progressEvents = (await events(env.url, a)).filter((e) => e.event === 'progress');
    const values = progressEvents.map((e) => e.payload.progress);
    // Every value the task showed was announced by a progress event, in that order.
    const distinct = numbers.filter((v, i) => i === 0 || v !== numbers[i - 1]);
    expect(values).toEqual(distinct);
    for (const e of progressEvents) expect(Number.isInteger(e.payload.progress)).toBe(true);

    const b = await createTask(env.url, {
      type: 'video',
      model: 'bytedance/seedance-1-pro',
      prompt: 'progress two bars',
    });
    const two = await followProgress(b, 2000);
    expect(two.task.status).toBe('succeeded');
    const vs = (await events(env.url, b))
      .filter((e) => e.event === 'progress')
      .map((e) => e.payload.progress as number);
    // The logs' second bar starts again at 0 %; the task's progress does not go back with it.
    expect(vs).toEqual([...vs].sort((x, y) => x - y));
    expect(new Set(vs).size).toBe(vs.length);
    expect(vs).toContain(100);
    const logs = String(env.standin.prediction((await env.gw.tasks.find(b))!.prediction_id!)!.logs);
    expect(logs).toContain('Decoding frames');
  });

  it('a model that logs no progress reports null, not 0', async () => {
    const id = await createTask(env.url, {
      type: 'image',
      model: 'google/imagen-4-fast',
      prompt: 'no progress please',
    });
    const row = await waitFor('prediction id', async () => (await env.gw.tasks.find(id))?.prediction_id);
    // Well into processing: the stand-in logs plain text only.
    await env.standin.advance(2500);
    const p = env.standin.prediction(row)!;
    expect(p.status).toBe('processing');
    expect(p.logs).toContain('Generating image');
    // Let the runner poll it a few times.
    const gets = env.standin.requests.filter((r) => r.op === 'get' && r.path.endsWith(row)).length;
    await waitFor(
      'a few polls',
      () => env.standin.requests.filter((r) => r.op === 'get' && r.path.endsWith(row)).length >= gets + 3,
    );
    const t = await getTask(env.url, id);
    expect(t.status).toBe('processing');
    expect(t.progress).toBeNull();
    const done = await runToEnd(env, id);
    expect(done.status).toBe('succeeded');
    const ev = await events(env.url, id);
    expect(ev.filter((e) => e.event === 'progress')).toHaveLength(0);
    const statuses = ev.filter((e) => e.event === 'status');
    expect(statuses.map((e) => [e.payload.status, e.payload.progress])).toEqual([
      ['queued', null],
      ['processing', null],
      ['succeeded', 100],
    ]);
  });

  it('an unknown file under /files is a 404', async () => {
    const res = await call(`${env.url}/files/00000000-0000-0000-0000-000000000000/nope.jpg`);
    expect(res.status).toBe(404);
  });
});
