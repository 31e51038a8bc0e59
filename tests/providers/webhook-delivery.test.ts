import http from 'node:http';
import type { AddressInfo } from 'node:net';
import { verifyWebhook, WebhookVerificationError } from '../../src/providers/replicate/webhooks';
import { setup } from './helpers';

interface Received {
  headers: http.IncomingHttpHeaders;
  body: Buffer;
}

/** A webhook receiver; `answer` picks the status for each delivery. */
async function receiver(answer: (r: Received, n: number) => number = () => 200) {
  const got: Received[] = [];
  const server = http.createServer((req, res) => {
    const chunks: Buffer[] = [];
    req.on('data', (c: Buffer) => chunks.push(c));
    req.on('end', () => {
      const r = { headers: req.headers, body: Buffer.concat(chunks) };
      got.push(r);
      res.statusCode = answer(r, got.length);
      res.end();
    });
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', () => r()));
  const url = `http://127.0.0.1:${(server.address() as AddressInfo).port}/api/webhooks/replicate?task_id=t1`;
  return { url, got, close: () => new Promise<void>((r) => server.close(() => r())) };
}

const statusOf = (r: Received) => (JSON.parse(r.body.toString()) as { status: string }).status;

describe('signed webhook deliveries', () => {
  it('sends start, throttled output/logs and completed, each verifiable with the API secret', async () => {
    const { standin, client, close } = await setup();
    const rx = await receiver();
    try {
      const secret = await client.getWebhookSecret();
      expect(secret).toBe(standin.webhookSecret);
      expect(secret).toMatch(/^whsec_/);
      const p = await client.create({
        model: 'openai/gpt-4.1',
        input: { prompt: 'hi' },
        webhook: rx.url,
        webhookEventsFilter: ['start', 'output', 'logs', 'completed'],
      });
      await standin.advance(10_000, { stepMs: 100 });
      await standin.webhooksSettled();
      const events = standin.webhookDeliveries.map((d) => d.event);
      expect(events[0]).toBe('start');
      expect(events[events.length - 1]).toBe('completed');
      expect(events.filter((e) => e === 'completed')).toHaveLength(1);
      expect(events.filter((e) => e === 'output').length).toBeGreaterThan(1);
      const outputs = standin.webhookDeliveries.filter((d) => d.event === 'output');
      for (let i = 1; i < outputs.length; i++)
        expect(outputs[i]!.eventAt - outputs[i - 1]!.eventAt).toBeGreaterThanOrEqual(500);
      expect(rx.got).toHaveLength(standin.webhookDeliveries.length);
      for (const r of rx.got) {
        const v = verifyWebhook({ secret, headers: r.headers, rawBody: r.body });
        expect((v.payload as { id: string }).id).toBe(p.id);
      }
      expect(statusOf(rx.got[rx.got.length - 1]!)).toBe('succeeded');
    } finally {
      await rx.close();
      await close();
    }
  });

  it('without a filter sends output and completed only', async () => {
    const { standin, client, close } = await setup();
    const rx = await receiver();
    try {
      await client.create({ model: 'openai/gpt-4.1', input: { prompt: 'hi' }, webhook: rx.url });
      await client.create({ model: 'google/imagen-4-fast', input: { prompt: 'hi' }, webhook: rx.url });
      await standin.advance(10_000, { stepMs: 100 });
      await standin.webhooksSettled();
      expect(new Set(standin.webhookDeliveries.map((d) => d.event))).toEqual(new Set(['output', 'completed']));
      // An image model's output appears only at the end, so it gets just the completed delivery.
      const imagen = [...standin.predictions.values()].find((p) => p.model.ref === 'google/imagen-4-fast')!;
      expect(standin.webhookDeliveries.filter((d) => d.predictionId === imagen.id).map((d) => d.event)).toEqual([
        'completed',
      ]);
    } finally {
      await rx.close();
      await close();
    }
  });

  it('retries only the terminal delivery, with the same webhook-id', async () => {
    const { standin, client, close } = await setup();
    // Fail every intermediate delivery, and the first two tries of the terminal one.
    let completedTries = 0;
    const rx = await receiver((r) => (statusOf(r) === 'succeeded' ? (++completedTries <= 2 ? 500 : 204) : 503));
    try {
      await client.create({
        model: 'google/gemini-2.5-flash',
        input: { prompt: 'hi' },
        webhook: rx.url,
        webhookEventsFilter: ['start', 'output', 'completed'],
      });
      await standin.advance(10_000, { stepMs: 100 });
      // Retries wait in simulated time: move it on until they are through.
      for (let i = 0; i < 20 && standin.webhookDeliveries.filter((d) => d.event === 'completed').length < 3; i++)
        await standin.advance(1000);
      await standin.webhooksSettled();
      const completed = standin.webhookDeliveries.filter((d) => d.event === 'completed');
      expect(completed.map((d) => [d.attempt, d.status])).toEqual([
        [1, 500],
        [2, 500],
        [3, 204],
      ]);
      expect(new Set(completed.map((d) => d.webhookId)).size).toBe(1);
      expect(completed[1]!.at).toBeGreaterThan(completed[0]!.at);
      const others = standin.webhookDeliveries.filter((d) => d.event !== 'completed');
      expect(others.length).toBeGreaterThan(0);
      expect(others.every((d) => d.attempt === 1 && d.status === 503)).toBe(true);
    } finally {
      await rx.close();
      await close();
    }
  });

  it.each([
    ['bad', 'bad_signature'],
    ['stale', 'stale'],
    ['missing', 'missing_headers'],
    ['rotated', 'accepted'],
  ] as const)('signature switch %s -> %s', async (mode, expected) => {
    const { standin, client, close } = await setup();
    const rx = await receiver();
    try {
      standin.faults.webhook.signature = mode;
      await client.create({
        model: 'google/imagen-4-fast',
        input: { prompt: 'hi' },
        webhook: rx.url,
        webhookEventsFilter: ['completed'],
      });
      await standin.advance(10_000, { stepMs: 1000 });
      await standin.webhooksSettled();
      expect(rx.got).toHaveLength(1);
      let outcome = 'accepted';
      try {
        verifyWebhook({ secret: standin.webhookSecret, headers: rx.got[0]!.headers, rawBody: rx.got[0]!.body });
      } catch (e) {
        outcome = (e as WebhookVerificationError).reason;
      }
      expect(outcome).toBe(expected);
      if (mode === 'rotated') expect(String(rx.got[0]!.headers['webhook-signature']).split(' ')).toHaveLength(2);
    } finally {
      await rx.close();
      await close();
    }
  });

  it('can send the terminal delivery twice, as the same message', async () => {
    const { standin, client, close } = await setup();
    const rx = await receiver();
    try {
      standin.faults.webhook.duplicateTerminal = true;
      await client.create({
        model: 'google/imagen-4-fast',
        input: { prompt: 'hi' },
        webhook: rx.url,
        webhookEventsFilter: ['completed'],
      });
      await standin.advance(10_000, { stepMs: 1000 });
      await standin.webhooksSettled();
      expect(rx.got).toHaveLength(2);
      expect(rx.got[0]!.headers['webhook-id']).toBe(rx.got[1]!.headers['webhook-id']);
      expect(rx.got[0]!.body.equals(rx.got[1]!.body)).toBe(true);
    } finally {
      await rx.close();
      await close();
    }
  });
});
