import { signWebhook } from '../../src/providers/replicate/webhooks';
import { BACKENDS } from '../helpers/db';
import { call, createTask, events, getTask, runToEnd, startRunnerEnv, waitFor } from './helpers';

/**
 * Streamed text is announced once: every text_delta event carries the part of the text beyond
 * what is stored (a compare-and-set under the task's row lock), so two writers that see the same
 * text so far cannot both append it, and the deltas always join to the final text.
 */
const joined = (ev: any[]) =>
  ev
    .filter((e) => e.event === 'text_delta')
    .map((e) => e.payload.delta)
    .join('');

describe.each(BACKENDS)('runner on %s: text deltas with more than one writer', (backend) => {
  it('overlapping deliveries of the terminal webhook for a text task no runner holds announce the rest of the text once', async () => {
    const env = await startRunnerEnv({
      backend,
      webhooks: true,
      standin: { clock: 'virtual' },
      runner: { pollIntervalMs: 60_000 },
    });
    try {
      const id = await createTask(env.url, { type: 'text', model: 'gpt-4.1', prompt: 'overlapping deliveries' });
      const pid = await waitFor('prediction', async () => (await env.gw.tasks.find(id))?.prediction_id);
      await env.standin.advance(2000, { stepMs: 500 });
      await waitFor('some deltas', async () => (await events(env.url, id)).some((e) => e.event === 'text_delta'));
      await env.gw.runner.stop(0);
      expect(await env.gw.tasks.find(id)).toMatchObject({ status: 'processing', lease_owner: null });
      // The stand-in's own deliveries are refused; the prediction ends.
      env.standin.faults.webhook.signature = 'bad';
      await env.standin.advance(8000, { stepMs: 500 });
      const pred = env.standin.prediction(pid)!;
      expect(pred.status).toBe('succeeded');

      // The same terminal delivery twice (a retry of one that seemed to time out) and once more
      // under another message id, all at once.
      const body = JSON.stringify(pred);
      const ts = Math.floor(Date.now() / 1000);
      const headers = (msgId: string) => ({
        'content-type': 'application/json',
        'webhook-id': msgId,
        'webhook-timestamp': String(ts),
        'webhook-signature': signWebhook({ secret: env.standin.webhookSecret, id: msgId, timestamp: ts, body }),
      });
      const hook = `${env.url}/api/webhooks/replicate?task_id=${id}`;
      const answers = await Promise.all([
        call(hook, { raw: body, headers: headers('msg_same') }),
        call(hook, { raw: body, headers: headers('msg_same') }),
        call(hook, { raw: body, headers: headers('msg_other') }),
      ]);
      expect(answers.map((a) => a.status)).toEqual([200, 200, 200]);

      const t = await getTask(env.url, id);
      expect(t.status).toBe('succeeded');
      const ev = await events(env.url, id);
      expect(joined(ev)).toBe(t.output.text);
      expect(ev.filter((e) => e.event === 'text_response')).toHaveLength(1);
      expect(ev.map((e) => e.seq)).toEqual(ev.map((_, k) => k + 1));
    } finally {
      await env.close();
    }
  });

  it('a lease that lapses mid-stream: the old owner stops appending, the new one continues; the deltas join to the text', async () => {
    const runner = { leaseMs: 600, pollIntervalMs: 1500, claimIntervalMs: 50 };
    const a = await startRunnerEnv({ backend, runner });
    await a.gw.runner.stop(0);
    const b = await startRunnerEnv({ backend, standinInstance: a.standin, tdb: a.tdb, runner });
    await b.gw.runner.stop(0);
    try {
      a.gw.runner.start();
      const id = await createTask(a.url, {
        type: 'text',
        model: 'claude-sonnet-4-20250514',
        prompt: 'lease lapse mid stream',
      });
      await waitFor('prediction', async () => (await a.gw.tasks.find(id))?.prediction_id);
      await a.standin.advance(1500, { stepMs: 250 });
      await waitFor('some deltas', async () => (await events(a.url, id)).some((e) => e.event === 'text_delta'));
      // A's lease renewals fail for a while (its database pool stalls); everything else in A works.
      const ra = a.gw.runner as unknown as { renewLeases: () => Promise<void> };
      const renew = ra.renewLeases;
      ra.renewLeases = async () => undefined;
      b.gw.runner.start();
      await waitFor('B took over', async () => (await a.gw.tasks.find(id))?.lease_owner === b.gw.runner.owner, 5000);
      ra.renewLeases = renew;
      // A's stream (until A's next poll notices) and B's both see the output that follows.
      await a.standin.advance(600, { stepMs: 100 });
      const t = await runToEnd(b, id, { stepMs: 300 });
      expect(t.status).toBe('succeeded');
      const ev = await events(a.url, id);
      expect(joined(ev)).toBe(t.output.text);
      expect(ev.filter((e) => e.event === 'text_response')).toHaveLength(1);
    } finally {
      await b.close();
      await a.close();
    }
  });
});
