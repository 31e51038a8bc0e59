import { BACKENDS } from '../helpers/db';
import {
  call,
  createTask,
  events,
  getTask,
  runToEnd,
  startRunnerEnv,
  TERMINAL,
  waitFor,
  type RunnerEnv,
} from './helpers';

/**
 * How runs end when the runner gives up on them, hands them back, or cancels: a task failed
 * for good leaves no prediction running; a hand-back (shutdown, lost lease) costs no try.
 */
describe.each(BACKENDS)('runner on %s: giving up, handing back, canceling', (backend) => {
  let env: RunnerEnv;
  beforeAll(async () => {
    // A cancel that the provider takes but that does not stop the prediction is waited out this long.
    env = await startRunnerEnv({ backend, runner: { cancelGraceMs: 500 } });
  });
  afterAll(() => env?.close());
  beforeEach(() => env.standin.reset());

  const ended = (id: string, timeoutMs = 30_000) =>
    waitFor(
      'task end',
      async () => {
        const x = await getTask(env.url, id);
        return ['failed', 'succeeded', 'canceled'].includes(x.status) ? x : null;
      },
      timeoutMs,
    );
  const cancels = (pid: string) =>
    env.standin.requests.filter((r) => r.op === 'cancel' && r.path === `/v1/predictions/${pid}/cancel`);

  it('retries exhausted while the prediction still runs: the prediction is canceled at the provider', async () => {
    const id = await createTask(env.url, { type: 'video', prompt: 'reads keep failing' });
    const pid = await waitFor('prediction', async () => (await env.gw.tasks.find(id))?.prediction_id);
    env.standin.faults.inject({ op: 'get', times: 1000, action: { kind: 'status', status: 503 } });
    const t = await ended(id, 60_000);
    expect(t).toMatchObject({ status: 'failed', attempts: 3, error: { code: 'retries_exhausted' } });
    expect(cancels(pid)).toHaveLength(1);
    expect(env.standin.prediction(pid)!.status).toBe('canceled');
    // It stays canceled: no output made (and billed) for a task that failed.
    env.standin.faults.rules = [];
    await env.standin.advance(120_000, { stepMs: 5000 });
    expect(env.standin.prediction(pid)!.status).toBe('canceled');
  });

  it('restarts hand the task back without using up its tries: a later transient failure is still retried', async () => {
    const id = await createTask(env.url, { type: 'video', prompt: 'restarted twice' });
    const pid = await waitFor('prediction', async () => (await env.gw.tasks.find(id))?.prediction_id);
    expect((await env.gw.tasks.find(id))!.attempts).toBe(1);
    for (let i = 0; i < 2; i++) {
      await env.gw.runner.stop(0); // past the shutdown deadline: released, not failed
      expect(await env.gw.tasks.find(id)).toMatchObject({ status: 'processing', lease_owner: null, attempts: 0 });
      env.gw.runner.start();
      await waitFor('claimed again', async () => (await env.gw.tasks.find(id))?.lease_owner);
      expect((await env.gw.tasks.find(id))!.attempts).toBe(1);
    }
    // Then reads fail until the run gives up (a transient failure: one try of three used) and
    // the task is claimed for its next try; the provider recovers.
    env.standin.faults.inject({ op: 'get', times: 1000, action: { kind: 'status', status: 503 } });
    await waitFor('next try', async () => {
      const r = (await env.gw.tasks.find(id))!;
      return r.attempts >= 2 || TERMINAL.has(r.status);
    });
    env.standin.faults.rules = [];
    const t = await runToEnd(env, id, { stepMs: 2000 });
    expect(t).toMatchObject({ status: 'succeeded', error: null });
    expect((await env.gw.tasks.find(id))!.prediction_id).toBe(pid);
  });

  it('a cancel the provider takes but that does not stop the prediction: the task ends canceled after the grace period and is no longer polled', async () => {
    const id = await createTask(env.url, { type: 'video', prompt: 'cancel that does not take' });
    const pid = await waitFor('prediction', async () => (await env.gw.tasks.find(id))?.prediction_id);
    await env.standin.advance(5000); // processing now; the stand-in's clock then stands still
    expect(env.standin.prediction(pid)!.status).toBe('processing');
    env.standin.faults.inject({ op: 'cancel', action: { kind: 'cancel_ignored' } });
    const before = Date.now();
    const res = await call(`${env.url}/api/tasks/${id}/cancel`, { method: 'POST' });
    expect(res.status).toBe(200);
    const t = await ended(id, 10_000);
    expect(t).toMatchObject({ status: 'canceled', error: { code: 'canceled' } });
    expect(Date.now() - before).toBeGreaterThanOrEqual(500);
    expect(cancels(pid)).toHaveLength(1);
    expect(env.standin.prediction(pid)!.status).toBe('processing'); // it never confirmed the cancel
    const ev = await events(env.url, id);
    expect(ev.filter((e) => e.event === 'video_response')).toHaveLength(1);
    // Not followed any more: no further reads of the prediction.
    const reads = () => env.standin.requests.filter((r) => r.op === 'get' && r.path.endsWith(pid)).length;
    const n = reads();
    await new Promise((r) => setTimeout(r, 300));
    expect(reads()).toBe(n);
    expect(env.gw.runner.activeCount).toBe(0);
  });
});
