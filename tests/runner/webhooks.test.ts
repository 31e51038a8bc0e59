import { signWebhook } from '../../src/providers/replicate/webhooks';
import { BACKENDS } from '../helpers/db';
import { call, createTask, events, getTask, startRunnerEnv, waitFor, type RunnerEnv } from './helpers';

/**
 * Acceptance 6 of issue 4: with PUBLIC_URL set, the runner asks the stand-in for webhooks;
 * deliveries with a good signature are accepted and move the task; bad, stale or missing
 * signatures get 4xx and change nothing; the same delivery twice gives one event.
 */
describe.each(BACKENDS)('runner on %s: webhooks', (backend) => {
  let env: RunnerEnv;
  beforeAll(async () => {
    env = await startRunnerEnv({
      backend,
      webhooks: true,
      standin: { clock: 'virtual', webhookRetryDelaysMs: [1000, 1000, 1000, 1000, 1000, 1000] },
      // Polls so rare that only webhooks can make the task move in time.
      runner: { pollIntervalMs: 60_000 },
    });
  });
  afterAll(() => env?.close());
  beforeEach(() => {
    env.standin.reset();
  });

  const hook = () => `${env.url}/api/webhooks/replicate`;

  it('the runner asks for webhooks at PUBLIC_URL and they drive the task, not polling', async () => {
    expect(env.url).toBe(env.gw.config.publicUrl);
    const id = await createTask(env.url, { type: 'image', prompt: 'webhook driven' });
    const pid = await waitFor('prediction', async () => (await env.gw.tasks.find(id))?.prediction_id);
    const create = env.standin.creates()[0]!;
    expect(create.body).toMatchObject({
      webhook: `${hook()}?task_id=${id}`,
      webhook_events_filter: expect.arrayContaining(['completed']),
    });
    await env.standin.advance(6000, { stepMs: 500 });
    const t = await waitFor(
      'succeeded',
      async () => {
        const x = await getTask(env.url, id);
        return x.status === 'succeeded' ? x : null;
      },
      10_000,
    );
    expect(t.output.urls[0]).toContain(`${env.url}/files/${id}/`);
    const delivered = env.standin.webhookDeliveries.filter((d) => d.predictionId === pid);
    expect(delivered.map((d) => d.event)).toEqual(expect.arrayContaining(['start', 'completed']));
    expect(delivered.every((d) => d.status === 200)).toBe(true);
    // The poll interval is a minute: the few GETs there were followed deliveries.
    const gets = env.standin.requests.filter((r) => r.op === 'get').length;
    expect(gets).toBeLessThanOrEqual(delivered.length + 1);
  });

  it('a streamed text task driven by a burst of deliveries reaches its end with its deltas joined', async () => {
    const id = await createTask(env.url, {
      type: 'text',
      model: 'claude-sonnet-4-20250514',
      prompt: 'many deliveries',
    });
    const pid = await waitFor('prediction', async () => (await env.gw.tasks.find(id))?.prediction_id);
    // Output and logs deliveries every 500 ms of stand-in time, sent as fast as the clock moves.
    for (let i = 0; i < 30; i++) await env.standin.advance(250, { stepMs: 250 });
    const t = await waitFor(
      'succeeded',
      async () => {
        const x = await getTask(env.url, id);
        return x.status === 'succeeded' ? x : null;
      },
      10_000,
    );
    const delivered = env.standin.webhookDeliveries.filter((d) => d.predictionId === pid);
    expect(delivered.length).toBeGreaterThan(5);
    const ev = await events(env.url, id);
    expect(
      ev
        .filter((e) => e.event === 'text_delta')
        .map((e) => e.payload.delta)
        .join(''),
    ).toBe(t.output.text);
  });

  it('with the runner stopped mid-stream, deliveries alone finish a text task and its deltas still join up', async () => {
    const id = await createTask(env.url, { type: 'text', model: 'gpt-4.1', prompt: 'finished by webhooks' });
    await waitFor('prediction', async () => (await env.gw.tasks.find(id))?.prediction_id);
    await env.standin.advance(2000, { stepMs: 500 });
    await waitFor('some deltas', async () => (await events(env.url, id)).some((e) => e.event === 'text_delta'));
    await env.gw.runner.stop(0);
    expect(await env.gw.tasks.find(id)).toMatchObject({ status: 'processing', lease_owner: null });
    await env.standin.advance(4000, { stepMs: 500 });
    const t = await waitFor(
      'succeeded',
      async () => {
        const x = await getTask(env.url, id);
        return x.status === 'succeeded' ? x : null;
      },
      10_000,
    );
    const ev = await events(env.url, id);
    expect(
      ev
        .filter((e) => e.event === 'text_delta')
        .map((e) => e.payload.delta)
        .join(''),
    ).toBe(t.output.text);
    expect(ev.filter((e) => e.event === 'text_response')).toHaveLength(1);
    env.gw.runner.start();
  });

  it('bad, stale and missing signatures get 4xx and change nothing; a good one is accepted; a duplicate adds nothing', async () => {
    const id = await createTask(env.url, { type: 'image', prompt: 'signatures' });
    const pid = await waitFor('prediction', async () => (await env.gw.tasks.find(id))?.prediction_id);
    // Take the runner out of the picture so that only deliveries can change the task.
    await env.gw.runner.stop(0);
    expect(await env.gw.tasks.find(id)).toMatchObject({ status: 'processing', lease_owner: null });
    const before = await events(env.url, id);

    const unchanged = async () => {
      expect((await getTask(env.url, id)).status).toBe('processing');
      expect(await events(env.url, id)).toEqual(before);
    };
    const completed = () =>
      env.standin.webhookDeliveries.filter((d) => d.predictionId === pid && d.event === 'completed');

    // The stand-in signs badly; its prediction ends; every delivery is refused.
    env.standin.faults.webhook.signature = 'bad';
    await env.standin.advance(6000, { stepMs: 500 });
    await waitFor('refused terminal delivery', () => completed().length === 1 && completed()[0]!.status !== null);
    const all = env.standin.webhookDeliveries.filter((d) => d.predictionId === pid);
    expect(all.length).toBeGreaterThan(1);
    expect(all.map((d) => d.status)).toEqual(all.map(() => 401));
    await unchanged();

    // Its retries: stale timestamp, then no signature headers: refused too.
    env.standin.faults.webhook.signature = 'stale';
    await env.standin.advance(1000);
    await waitFor('second try', () => completed().length === 2 && completed()[1]!.status !== null);
    expect(completed()[1]!.status).toBe(401);
    env.standin.faults.webhook.signature = 'missing';
    await env.standin.advance(1000);
    await waitFor('third try', () => completed().length === 3 && completed()[2]!.status !== null);
    expect(completed()[2]!.status).toBeGreaterThanOrEqual(400);
    expect(completed()[2]!.status).toBeLessThan(500);
    expect(completed()[2]!.headers['webhook-signature']).toBeUndefined();
    await unchanged();

    // A body changed after signing, and a delivery for the wrong task: refused / ignored.
    const good = completed()[0]!;
    const ts = Math.floor(Date.now() / 1000);
    const signed = (body: string, msgId = 'msg_test_tampered') => ({
      'content-type': 'application/json',
      'webhook-id': msgId,
      'webhook-timestamp': String(ts),
      'webhook-signature': signWebhook({ secret: env.standin.webhookSecret, id: msgId, timestamp: ts, body }),
    });
    const tampered = await call(`${hook()}?task_id=${id}`, {
      raw: good.body.replace('"succeeded"', '"failed"'),
      headers: signed(good.body),
    });
    expect(tampered.status).toBe(401);
    await unchanged();

    // The stand-in's next retry is signed well: accepted, the task ends.
    env.standin.faults.webhook.signature = 'good';
    await env.standin.advance(1000);
    await waitFor('fourth try', () => completed().length === 4 && completed()[3]!.status !== null);
    expect(completed()[3]!.status).toBe(200);
    expect(completed()[3]!.webhookId).toBe(good.webhookId); // retries keep their id
    const t = await getTask(env.url, id);
    expect(t.status).toBe('succeeded');
    expect(t.output.urls[0]).toContain(`/files/${id}/`);
    const after = await events(env.url, id);
    expect(after.slice(before.length).map((e) => e.event)).toEqual(['status', 'image_response']);

    // The same delivery again (the stand-in's headers, fresh enough): accepted, no new event.
    const again = await call(`${hook()}?task_id=${id}`, {
      raw: completed()[3]!.body,
      headers: completed()[3]!.headers,
    });
    expect(again.status).toBe(200);
    // The same state under a new message id: nothing new either (events come from state).
    const other = await call(`${hook()}?task_id=${id}`, {
      raw: good.body,
      headers: signed(good.body, 'msg_test_other'),
    });
    expect(other.status).toBe(200);
    expect(await events(env.url, id)).toEqual(after);
    // No more tries once accepted.
    await env.standin.advance(5000);
    expect(completed()).toHaveLength(4);
  });

  it('a terminal delivery sent twice gives one final event', async () => {
    env.gw.runner.start();
    env.standin.faults.webhook.duplicateTerminal = true;
    const id = await createTask(env.url, { type: 'text', model: 'gemini-2.5-flash-lite', prompt: 'twice' });
    const pid = await waitFor('prediction', async () => (await env.gw.tasks.find(id))?.prediction_id);
    await env.standin.advance(5000, { stepMs: 500 });
    await waitFor('two completed deliveries answered', () => {
      const c = env.standin.webhookDeliveries.filter((d) => d.predictionId === pid && d.event === 'completed');
      return c.length === 2 && c.every((d) => d.status !== null);
    });
    const c = env.standin.webhookDeliveries.filter((d) => d.predictionId === pid && d.event === 'completed');
    expect(c[0]!.webhookId).toBe(c[1]!.webhookId);
    expect(c.map((d) => d.status)).toEqual([200, 200]);
    const t = await waitFor('succeeded', async () => {
      const x = await getTask(env.url, id);
      return x.status === 'succeeded' ? x : null;
    });
    const ev = await events(env.url, id);
    expect(ev.filter((e) => e.event === 'text_response')).toHaveLength(1);
    expect(ev.filter((e) => e.event === 'status' && e.payload.status === 'succeeded')).toHaveLength(1);
    expect(
      ev
        .filter((e) => e.event === 'text_delta')
        .map((e) => e.payload.delta)
        .join(''),
    ).toBe(t.output.text);
  });

  it('a delivery for a task another live process holds is left to that process', async () => {
    const id = await createTask(env.url, { type: 'image', prompt: 'held elsewhere' });
    const pid = await waitFor('prediction', async () => (await env.gw.tasks.find(id))?.prediction_id);
    await env.gw.runner.stop(0);
    // As if a second gateway had claimed it (its lease is good for a while).
    await env.tdb
      .db('tasks')
      .where({ id })
      .update({ lease_owner: 'other-process', lease_expires_at: new Date(Date.now() + 60_000) });
    await env.standin.advance(6000, { stepMs: 500 });
    await waitFor('completed delivery answered', () =>
      env.standin.webhookDeliveries.some((d) => d.predictionId === pid && d.event === 'completed' && d.status !== null),
    );
    const completed = env.standin.webhookDeliveries.filter((d) => d.predictionId === pid && d.event === 'completed');
    expect(completed.map((d) => d.status)).toEqual([200]);
    expect((await getTask(env.url, id)).status).toBe('processing');
    // Its lease lapses (that process died): this runner takes the task over and ends it.
    await env.tdb
      .db('tasks')
      .where({ id })
      .update({ lease_expires_at: new Date(Date.now() - 1000) });
    env.gw.runner.start();
    const t = await waitFor(
      'succeeded',
      async () => {
        const x = await getTask(env.url, id);
        return x.status === 'succeeded' ? x : null;
      },
      10_000,
    );
    expect(t.output.urls[0]).toContain(`/files/${id}/`);
  });

  it('without a signature secret match, an unsigned post is refused before it is read', async () => {
    const res = await call(`${hook()}?task_id=00000000-0000-0000-0000-000000000000`, {
      body: { id: 'x', status: 'succeeded' },
    });
    expect(res.status).toBe(401);
  });
});
