import { VirtualClock } from '../../src/providers/replicate/standin';
import { BACKENDS } from '../helpers/db';
import {
  call,
  createTask,
  createsFor,
  events,
  getTask,
  registryWith,
  runToEnd,
  startRunnerEnv,
  waitFor,
  type RunnerEnv,
} from './helpers';

/**
 * Acceptance 3 of issue 4 (provider faults), plus cancel of a running task and shutdown,
 * driven from outside: REST in, real HTTP to a stand-in that injects the faults and records
 * every request it got.
 */
describe.each(BACKENDS)('runner on %s: provider faults', (backend) => {
  let env: RunnerEnv;
  beforeAll(async () => {
    // A deadline short enough to pass in a test, on one model only.
    env = await startRunnerEnv({ backend, registry: registryWith({ 'bytedance/seedream-3': { deadlineMs: 400 } }) });
  });
  afterAll(() => env?.close());
  beforeEach(() => env.standin.reset());

  it('429 with Retry-After: 2 on create is waited out, then the create succeeds (one try)', async () => {
    env.standin.faults.throttle('create', 1, 2);
    const prompt = 'throttled once';
    const before = Date.now();
    const id = await createTask(env.url, { type: 'image', prompt });
    const t = await runToEnd(env, id);
    expect(t).toMatchObject({ status: 'succeeded', attempts: 1 });
    const creates = createsFor(env.standin, prompt);
    expect(creates.map((c) => c.status)).toEqual([429, 201]);
    expect(creates[0]!.fault).toBe('status');
    // The 429 carried the header; the second create came no sooner than it asked.
    expect(Date.now() - before).toBeGreaterThanOrEqual(2000);
    const row = await env.gw.tasks.find(id);
    expect(env.standin.creates().filter((c) => c.predictionId === row!.prediction_id)).toHaveLength(1);
  });

  it('429 with Retry-After: 2 on a read is waited out too', async () => {
    const clockStart = Date.now();
    const id = await createTask(env.url, { type: 'image', prompt: 'throttled read' });
    const pid = await waitFor('prediction', async () => (await env.gw.tasks.find(id))?.prediction_id);
    env.standin.faults.throttle('get', 1, 2);
    const t = await runToEnd(env, id);
    expect(t).toMatchObject({ status: 'succeeded', attempts: 1 });
    const gets = env.standin.requests.filter((r) => r.op === 'get' && r.path.endsWith(pid));
    expect(gets.filter((g) => g.status === 429)).toHaveLength(1);
    expect(Date.now() - clockStart).toBeGreaterThanOrEqual(2000);
  });

  it('five 5xx answers in a row on reads are survived', async () => {
    const id = await createTask(env.url, { type: 'text', model: 'gpt-4.1', prompt: 'five failures' });
    const pid = await waitFor('prediction', async () => (await env.gw.tasks.find(id))?.prediction_id);
    const n = env.standin.requests.length;
    for (const status of [500, 502, 503, 504, 500])
      env.standin.faults.inject({ op: 'get', action: { kind: 'status', status } });
    const t = await runToEnd(env, id, { stepMs: 300 });
    expect(t).toMatchObject({ status: 'succeeded', attempts: 1, error: null });
    const gets = env.standin.requests.slice(n).filter((r) => r.op === 'get' && r.path.endsWith(pid));
    // The five failures came one after another, then an answer.
    const firstFail = gets.findIndex((g) => g.status !== null && g.status >= 500);
    expect(gets.slice(firstFail, firstFail + 6).map((g) => g.status)).toEqual([500, 502, 503, 504, 500, 200]);
    expect(t.output.text).toContain('answering as openai/gpt-4.1');
  });

  it('a provider 422 fails the task at once after one attempt: invalid_input, the provider message kept for operators', async () => {
    const detail = '- input.prompt: prompt was rejected by the stand-in\n';
    env.standin.faults.inject({ op: 'create', action: { kind: 'status', status: 422, detail } });
    const prompt = 'rejected';
    const id = await createTask(env.url, { type: 'image', prompt });
    const t = await waitFor('failed', async () => {
      const x = await getTask(env.url, id);
      return x.status === 'failed' ? x : null;
    });
    expect(t.attempts).toBe(1);
    expect(t.error.code).toBe('invalid_input');
    expect(t.error.message).not.toContain('stand-in');
    expect((await env.gw.tasks.find(id))!.provider_error).toContain('prompt was rejected by the stand-in');
    expect(createsFor(env.standin, prompt)).toHaveLength(1);
    // Nothing else happens to it afterwards.
    await new Promise((r) => setTimeout(r, 300));
    expect(createsFor(env.standin, prompt)).toHaveLength(1);
    const ev = await events(env.url, id);
    expect(ev.map((e) => e.event)).toEqual(['status', 'status', 'image_response']);
    expect(ev[2].payload).toMatchObject({ status: 'failed', error: { code: 'invalid_input' } });
    expect(JSON.stringify(ev)).not.toContain('stand-in');
  });

  it("a provider 402 (no credit) fails the task at once as an operator problem; the billing text is not the user's", async () => {
    env.standin.faults.noCredit = true;
    const prompt = 'no credit';
    const id = await createTask(env.url, { type: 'text', prompt });
    const t = await waitFor('failed', async () => {
      const x = await getTask(env.url, id);
      return x.status === 'failed' ? x : null;
    });
    expect(t).toMatchObject({ attempts: 1, error: { code: 'provider_unavailable' } });
    expect(t.error.message).toMatch(/operator/);
    const ev = await events(env.url, id);
    expect(JSON.stringify([t, ev])).not.toMatch(/billing|insufficient credit|replicate\.com/i);
    expect((await env.gw.tasks.find(id))!.provider_error).toMatch(/HTTP 402 .*insufficient credit.*\/account\/billing/);
    expect(createsFor(env.standin, prompt)).toHaveLength(1);
  });

  it('cancel while the create is in flight: the task ends canceled and the new prediction is canceled too', async () => {
    env.standin.faults.inject({ op: 'create', action: { kind: 'delay', ms: 800 } });
    const prompt = 'cancel during create';
    const id = await createTask(env.url, { type: 'image', prompt });
    await waitFor('create sent', () => createsFor(env.standin, prompt).length === 1);
    const res = await call(`${env.url}/api/tasks/${id}/cancel`, { method: 'POST' });
    expect(res.status).toBe(200);
    const pid = await waitFor('prediction made', () => createsFor(env.standin, prompt)[0]!.predictionId);
    await waitFor('prediction canceled', () => env.standin.prediction(pid)!.status === 'canceled');
    const t = await waitFor('task canceled', async () => {
      const x = await getTask(env.url, id);
      return x.status === 'canceled' ? x : null;
    });
    expect(t.output).toBeNull();
    expect(createsFor(env.standin, prompt)).toHaveLength(1);
    const ev = await events(env.url, id);
    expect(ev.filter((e) => e.event === 'image_response')).toHaveLength(1);
  });

  it('a prediction refused by the safety filter fails as content_refused, not retried; E005 is for operators', async () => {
    env.standin.faults.nextOutcome({ type: 'safety' }, 'google/imagen-4-fast');
    const prompt = 'unsafe';
    const id = await createTask(env.url, { type: 'image', prompt });
    const t = await runToEnd(env, id);
    expect(t).toMatchObject({ status: 'failed', attempts: 1, error: { code: 'content_refused' } });
    expect(t.error.message).not.toContain('E005');
    expect(t.error.message).toMatch(/change the prompt/);
    expect((await env.gw.tasks.find(id))!.provider_error).toContain('E005');
    expect(createsFor(env.standin, prompt)).toHaveLength(1);
  });

  it('input a model refuses after accepting it fails as invalid_input; a model crash as provider_failed', async () => {
    env.standin.faults.nextOutcome({ type: 'input_validation' }, 'google/imagen-4-fast');
    const bad = await createTask(env.url, { type: 'image', prompt: 'late validation' });
    expect(await runToEnd(env, bad)).toMatchObject({ status: 'failed', error: { code: 'invalid_input' } });
    const crash = 'CUDA out of memory. Tried to allocate 2.00 GiB';
    env.standin.faults.nextOutcome({ type: 'fail', error: crash }, 'google/imagen-4-fast');
    const oom = await createTask(env.url, { type: 'image', prompt: 'out of memory' });
    const t = await runToEnd(env, oom);
    expect(t).toMatchObject({ status: 'failed', error: { code: 'provider_failed' } });
    expect(t.error.message).not.toContain('CUDA');
    expect((await env.gw.tasks.find(oom))!.provider_error).toBe(crash);
  });

  it('our deadline cancels the prediction at the provider', async () => {
    const prompt = 'too slow';
    const id = await createTask(env.url, { type: 'image', model: 'bytedance/seedream-3', prompt });
    const pid = await waitFor('prediction', async () => (await env.gw.tasks.find(id))?.prediction_id);
    // The stand-in's clock stands still, so the prediction never ends by itself.
    const t = await waitFor(
      'failed',
      async () => {
        const x = await getTask(env.url, id);
        return x.status === 'failed' ? x : null;
      },
      10_000,
    );
    expect(t.error.code).toBe('timeout');
    expect(t.attempts).toBe(1);
    expect(
      env.standin.requests.filter((r) => r.op === 'cancel' && r.path === `/v1/predictions/${pid}/cancel`),
    ).toHaveLength(1);
    expect(env.standin.prediction(pid)!.status).toBe('canceled');
    expect(createsFor(env.standin, prompt)).toHaveLength(1);
  });

  it('cancel of a running task cancels its prediction; the task ends canceled with one final event', async () => {
    const id = await createTask(env.url, { type: 'video', prompt: 'cancel me' });
    const pid = await waitFor('prediction', async () => (await env.gw.tasks.find(id))?.prediction_id);
    await env.standin.advance(5000); // processing now
    expect(env.standin.prediction(pid)!.status).toBe('processing');
    const res = await call(`${env.url}/api/tasks/${id}/cancel`, { method: 'POST' });
    expect(res.status).toBe(200);
    const t = await waitFor('canceled', async () => {
      const x = await getTask(env.url, id);
      return x.status === 'canceled' ? x : null;
    });
    expect(t.error).toMatchObject({ code: 'canceled' });
    expect(
      env.standin.requests.filter((r) => r.op === 'cancel' && r.path === `/v1/predictions/${pid}/cancel`),
    ).toHaveLength(1);
    expect(env.standin.prediction(pid)!.status).toBe('canceled');
    // Cancel again: the same answer, nothing new.
    const again = await call(`${env.url}/api/tasks/${id}/cancel`, { method: 'POST' });
    expect(again.body.data.status).toBe('canceled');
    await new Promise((r) => setTimeout(r, 200));
    const ev = await events(env.url, id);
    expect(ev.filter((e) => e.event === 'video_response')).toHaveLength(1);
    expect(ev.filter((e) => e.event === 'status' && e.payload.status === 'canceled')).toHaveLength(1);
    expect(ev[ev.length - 1]).toMatchObject({ event: 'video_response', payload: { status: 'failed' } });
    expect(env.standin.requests.filter((r) => r.op === 'cancel')).toHaveLength(1);
  });
  it('a lost create answer is settled without taking the prediction of another task with the same input', async () => {
    // Stand-in time = our time, so both predictions fall in the look-up window.
    const clock = env.standin.clock as VirtualClock;
    if (clock.now() < Date.now()) clock.set(Date.now());
    const prompt = 'the very same prompt';
    const a = await createTask(env.url, { type: 'image', prompt });
    const pa = await waitFor('first prediction', async () => (await env.gw.tasks.find(a))?.prediction_id);
    env.standin.faults.inject({ op: 'create', action: { kind: 'create_then_drop' } });
    const b = await createTask(env.url, { type: 'image', prompt });
    const pb = await waitFor('second prediction', async () => (await env.gw.tasks.find(b))?.prediction_id);
    const creates = createsFor(env.standin, prompt);
    expect(creates.map((c) => c.fault)).toEqual([null, 'create_then_drop']);
    expect(pb).toBe(creates[1]!.predictionId);
    expect(pb).not.toBe(pa);
    expect((await runToEnd(env, a)).status).toBe('succeeded');
    expect((await runToEnd(env, b)).status).toBe('succeeded');
  });

  // The runners below work on the same database and stand-in; this one steps aside.
  it('a lease that lapses while its create is slow is not claimed again by the same process', async () => {
    await env.gw.runner.stop(0);
    // The lease runs out between renewals all the time; claims look every 20 ms.
    const other = await startRunnerEnv({
      backend,
      standinInstance: env.standin,
      tdb: env.tdb,
      runner: { leaseMs: 100, claimIntervalMs: 20 },
    });
    try {
      env.standin.faults.inject({ op: 'create', times: 3, action: { kind: 'delay', ms: 700 } });
      const prompts = ['slow create 1', 'slow create 2', 'slow create 3'];
      const ids: string[] = [];
      for (const p of prompts) ids.push(await createTask(other.url, { type: 'image', prompt: p }));
      for (const id of ids) {
        const t = await runToEnd(other, id);
        expect(t.status).toBe('succeeded');
      }
      for (const p of prompts) expect(createsFor(env.standin, p)).toHaveLength(1);
      expect(env.standin.requests.filter((r) => r.op === 'cancel')).toHaveLength(0);
    } finally {
      await other.close();
    }
  });

  it('shutdown: stop claiming, let running work finish; past the deadline release it; the next runner resumes the same predictions', async () => {
    await env.gw.runner.stop(0);
    const { standin, tdb } = env;
    const first = await startRunnerEnv({ backend, standinInstance: standin, tdb });
    let second: RunnerEnv | undefined;
    try {
      // Within the deadline: the running task finishes; a task created meanwhile is not claimed.
      const x = await createTask(first.url, { type: 'image', prompt: 'finish before stop' });
      await waitFor('prediction', async () => (await first.gw.tasks.find(x))?.prediction_id);
      let stopped = false;
      const stopping = first.gw.runner.stop(20_000).then(() => (stopped = true));
      const y = await createTask(first.url, { type: 'image', prompt: 'created while stopping' });
      await new Promise((r) => setTimeout(r, 300));
      expect(stopped).toBe(false);
      await standin.advance(6000);
      await stopping;
      expect((await getTask(first.url, x)).status).toBe('succeeded');
      expect(await first.gw.tasks.find(y)).toMatchObject({ status: 'queued', lease_owner: null, attempts: 0 });
      expect(createsFor(standin, 'created while stopping')).toHaveLength(0);
      expect((await call(`${first.url}/api/tasks/${y}/cancel`, { method: 'POST' })).body.data.status).toBe('canceled');

      // Past the deadline: unfinished work is handed back, not failed.
      first.gw.runner.start();
      const prompts = ['shut 1', 'shut 2', 'shut 3'];
      const ids: string[] = [];
      for (const p of prompts)
        ids.push(await createTask(first.url, { type: 'text', model: 'claude-sonnet-4-20250514', prompt: p }));
      for (const id of ids) await waitFor('prediction', async () => (await first.gw.tasks.find(id))?.prediction_id);
      await standin.advance(2000); // mid-stream
      await waitFor('some text', async () => (await events(first.url, ids[0]!)).some((e) => e.event === 'text_delta'));
      await first.gw.runner.stop(50);
      for (const id of ids) {
        const row = await first.gw.tasks.find(id);
        expect(row).toMatchObject({ status: 'processing', lease_owner: null, lease_expires_at: null, error: null });
        expect(row!.prediction_id).toBeTruthy();
      }
      expect(first.gw.runner.activeCount).toBe(0);
      const predictions = await Promise.all(ids.map(async (id) => (await first.gw.tasks.find(id))!.prediction_id));
      await first.close();

      second = await startRunnerEnv({ backend, standinInstance: standin, tdb });
      for (const [i, id] of ids.entries()) {
        const t = await runToEnd(second, id, { stepMs: 300 });
        expect(t.status).toBe('succeeded');
        const row = await second.gw.tasks.find(id);
        expect(row!.prediction_id).toBe(predictions[i]);
        expect(createsFor(standin, prompts[i]!)).toHaveLength(1);
        // Text announced before the restart is not announced twice.
        const ev = await events(second.url, id);
        expect(
          ev
            .filter((e) => e.event === 'text_delta')
            .map((e) => e.payload.delta)
            .join(''),
        ).toBe(t.output.text);
        expect(ev.map((e) => e.seq)).toEqual(ev.map((_, k) => k + 1));
      }
    } finally {
      await first.close().catch(() => undefined);
      await second?.close();
    }
  });
});
