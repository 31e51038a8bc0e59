import { BACKENDS } from '../helpers/db';
import { call, createTask, events, getTask, runToEnd, startRunnerEnv, waitFor, type RunnerEnv } from './helpers';

/**
 * A text task whose output stream carries the prediction is not polled while it does: the stream
 * brings its text and its end, and the runner watches all such tasks' rows with one query a poll
 * interval (a cancel or an end wakes the run). 1,000 streams would otherwise cost 1,000 reads of
 * the provider and 2,000 statements a second. A stream that goes quiet is polled again.
 */
const MODEL = 'openai/gpt-4.1';
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/** Drive the virtual clock `virtualMs` forward over about `realMs` of real time. */
async function stream(env: RunnerEnv, virtualMs: number, realMs: number): Promise<void> {
  const steps = Math.max(1, Math.round(realMs / 25));
  for (let i = 0; i < steps; i++) {
    await env.standin.advance(virtualMs / steps, { stepMs: 50 });
    await sleep(25);
  }
}

const getsOf = (env: RunnerEnv, pid: string, from: number) =>
  env.standin.requests.slice(from).filter((r) => r.op === 'get' && r.path.endsWith(pid)).length;

describe.each(BACKENDS)('runner on %s: polls while a text stream carries the prediction', (backend) => {
  let env: RunnerEnv;
  beforeAll(async () => {
    // Polls every 50 ms (FAST_RUNNER): over a second of streaming, about 20 of them without the stream.
    env = await startRunnerEnv({ backend, standin: { clock: 'virtual' } });
    env.standin.faults.timelines[MODEL] = { queueMs: 0, processingMs: 8000, tokens: 400 };
  });
  afterAll(() => env.close());

  it('a streaming text task reads no prediction while its stream delivers, and ends with its whole text', async () => {
    const id = await createTask(env.url, { type: 'text', model: 'gpt-4.1', prompt: 'quiet while streaming' });
    const pid = await waitFor('prediction', async () => (await env.gw.tasks.find(id))?.prediction_id);
    await stream(env, 500, 150);
    await waitFor('first deltas', async () => (await events(env.url, id)).some((e) => e.event === 'text_delta'));
    const from = env.standin.requests.length;
    await stream(env, 4000, 1200);
    // At most the polls of a stream that paused between two steps; 50 ms polls would be ~24.
    expect(getsOf(env, pid, from)).toBeLessThanOrEqual(3);
    const t = await runToEnd(env, id, { stepMs: 250 });
    expect(t.status).toBe('succeeded');
    const ev = await events(env.url, id);
    const text = ev
      .filter((e) => e.event === 'text_delta')
      .map((e) => e.payload.delta)
      .join('');
    expect(text).toBe(t.output.text);
    expect(ev.map((e) => e.seq)).toEqual(ev.map((_, k) => k + 1));
  });

  it('a cancel mid-stream is acted on within a few poll intervals: the prediction is canceled and the task ends canceled', async () => {
    const id = await createTask(env.url, { type: 'text', model: 'gpt-4.1', prompt: 'cancel mid stream' });
    const pid = await waitFor('prediction', async () => (await env.gw.tasks.find(id))?.prediction_id);
    await stream(env, 1000, 300);
    await waitFor('deltas', async () => (await events(env.url, id)).some((e) => e.event === 'text_delta'));
    const res = await call(`${env.url}/api/tasks/${id}/cancel`, { method: 'POST' });
    expect(res.status).toBe(200);
    const asked = Date.now();
    // The stream keeps delivering while the cancel is pending (the run must not wait for it to stop).
    const canceled = (async () => {
      while (env.standin.prediction(pid)!.status !== 'canceled' && Date.now() - asked < 10_000)
        await stream(env, 100, 25);
    })();
    await waitFor('prediction canceled', () => env.standin.prediction(pid)!.status === 'canceled', 10_000);
    await canceled;
    // Poll interval 50 ms: a run that waited for its stream to end would take the whole answer.
    expect(Date.now() - asked).toBeLessThan(3000);
    const t = await waitFor(
      'task canceled',
      async () => {
        const x = await getTask(env.url, id);
        return x.status === 'canceled' ? x : null;
      },
      10_000,
    );
    expect(t.error).toMatchObject({ code: 'canceled' });
  });

  it('a stream that delivers nothing (it hangs) leaves the run to its polls: the task ends with the text', async () => {
    env.standin.faults.inject({ op: 'stream', action: { kind: 'hang' } });
    const id = await createTask(env.url, { type: 'text', model: 'gpt-4.1', prompt: 'hanging stream' });
    const pid = await waitFor('prediction', async () => (await env.gw.tasks.find(id))?.prediction_id);
    const from = env.standin.requests.length;
    await stream(env, 4000, 600);
    // Polled at its interval, as a task without a stream is.
    expect(getsOf(env, pid, from)).toBeGreaterThanOrEqual(4);
    const t = await runToEnd(env, id, { stepMs: 500 });
    expect(t.status).toBe('succeeded');
    expect(t.output.text).toContain('answering as openai/gpt-4.1');
  });
});
