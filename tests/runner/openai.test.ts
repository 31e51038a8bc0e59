import type { Socket } from 'phoenix';
import { TokenSigner } from '../../src/auth/tokens';
import { startOpenAIStandin, type OpenAIStandin } from '../../src/providers/openai/standin';
import type { Standin } from '../../src/providers/replicate/standin';
import { fastStandin, joinRecording, phoenixSocket, standinEnv, waitFor, type Received } from '../channels/helpers';
import { call, startGateway, TEST_SECRET, type TestGateway } from '../helpers/gateway';

/**
 * Issue 24, acceptance 3: a text task on an OpenAI-compatible model (the chat completions
 * stand-in) streams over `task:<id>` and the user feed as a Replicate text task does; cancel
 * aborts the stream; a 429 is obeyed; a broken stream fails the task without sending it again.
 */

const alice = new TokenSigner(TEST_SECRET).mint('alice');

/** The event names in order, runs of text_delta counted once (how many deltas depends on timing). */
function shape(events: Received[]): string[] {
  return events.map((e) => e.event).filter((e, i, all) => e !== 'text_delta' || all[i - 1] !== 'text_delta');
}

describe('a text task on an OpenAI-compatible model', () => {
  let replicate: Standin;
  let oai: OpenAIStandin;
  let g: TestGateway;
  let socket: Socket;

  beforeAll(async () => {
    replicate = await fastStandin(8);
    oai = await startOpenAIStandin({ wordMs: 10, words: 30 });
    g = await startGateway('pglite', {
      auth: true,
      env: {
        ...standinEnv(replicate),
        OPENAI_BASE_URL: oai.url,
        OPENAI_API_KEY: oai.apiKey,
        OPENAI_MODELS: 'stand-in-chat=standin/chat-1',
      },
    });
    socket = phoenixSocket(g.url, alice);
  });
  afterAll(async () => {
    socket?.disconnect();
    await g?.close();
    await oai?.close();
    await replicate?.close();
  });

  const submit = async (model: string, prompt: string, extra: Record<string, unknown> = {}) => {
    const res = await call(`${g.url}/api/tasks`, {
      token: alice,
      body: { input_data: { type: 'text', model, prompt, ...extra } },
    });
    expect(res.status).toBe(202);
    return res.body.task_id as string;
  };
  const task = async (id: string) => (await call(`${g.url}/api/tasks/${id}`, { token: alice })).body.data;

  /** Submits and follows a task on its channel to its text_response. */
  async function follow(model: string, prompt: string) {
    const id = await submit(model, prompt);
    const rec = joinRecording(socket, `task:${id}`, { last_seq: 0 });
    await rec.joined;
    await waitFor('text_response', () => rec.events.some((e) => e.event === 'text_response'), 30_000);
    rec.channel.leave();
    return { id, events: rec.events };
  }

  it('lists both providers in GET /api/models and the OpenAPI document', async () => {
    const { data } = (await call(`${g.url}/api/models`)).body;
    const chat = data.find((m: any) => m.name === 'stand-in-chat');
    expect(chat).toMatchObject({ provider: 'openai', provider_model: 'standin/chat-1', type: 'text', output: 'text' });
    expect(data.find((m: any) => m.name === 'gpt-4.1')).toMatchObject({ provider: 'replicate', output: 'text' });
    const doc = (await call(`${g.url}/api/openapi.json`)).body;
    expect(doc.components.schemas.Model.properties.provider.enum).toEqual(['replicate', 'openai']);
  });

  it('streams the same events as a Replicate text task, on the task channel and the user feed, with usage', async () => {
    const feed = joinRecording(socket, 'tasks:alice');
    await feed.joined;
    const viaOpenAI = await follow('stand-in-chat', 'say something');
    const viaReplicate = await follow('gpt-4.1', 'say something');
    expect(shape(viaOpenAI.events)).toEqual(shape(viaReplicate.events));
    expect(shape(viaOpenAI.events)).toEqual(['status', 'status', 'text_delta', 'status', 'text_response']);

    const t = await task(viaOpenAI.id);
    const deltas = viaOpenAI.events.filter((e) => e.event === 'text_delta').map((e) => e.payload.delta);
    expect(deltas.length).toBeGreaterThan(1);
    expect(deltas.join('')).toBe(t.output.text);
    expect(t.output.text.split(' ')).toHaveLength(30);
    expect(t).toMatchObject({ status: 'succeeded', usage: { prompt_tokens: 2, completion_tokens: 30 } });
    expect((await task(viaReplicate.id)).usage).toBeUndefined();

    // The user feed carried the same events of the task, in the same order.
    const onFeed = feed.events.filter((e) => e.payload.task_id === viaOpenAI.id);
    expect(onFeed.map((e) => e.payload.seq)).toEqual(viaOpenAI.events.map((e) => e.payload.seq));
    feed.channel.leave();

    // A client that rejoins with last_seq gets what came after, once.
    const k = 3;
    const again = joinRecording(socket, `task:${viaOpenAI.id}`, { last_seq: k });
    await again.joined;
    await waitFor('the rest replayed', () => again.events.some((e) => e.event === 'text_response'));
    expect(again.events.map((e) => e.payload.seq)).toEqual(
      viaOpenAI.events.filter((e) => e.payload.seq > k).map((e) => e.payload.seq),
    );
    again.channel.leave();
    // One request to the endpoint for the task.
    expect(oai.completions().filter((c) => c.prompt === 'say something')).toHaveLength(1);
  });

  it('cancel aborts the stream at the endpoint', async () => {
    oai.setWordMs(200);
    try {
      const id = await submit('stand-in-chat', 'a long one to cancel');
      const rec = joinRecording(socket, `task:${id}`, { last_seq: 0 });
      await rec.joined;
      await waitFor('a first delta', () => rec.events.some((e) => e.event === 'text_delta'), 30_000);
      expect((await call(`${g.url}/api/tasks/${id}/cancel`, { token: alice, method: 'POST' })).status).toBe(200);
      await waitFor('canceled', async () => (await task(id)).status === 'canceled', 30_000);
      const sent = await waitFor('the endpoint saw the abort', () =>
        oai.completions().find((c) => c.prompt === 'a long one to cancel' && c.aborted),
      );
      expect(sent.completed).toBe(false);
      expect(sent.sent).toBeLessThan(30);
      rec.channel.leave();
    } finally {
      oai.setWordMs(10);
    }
  });

  it('a 429 is obeyed: the retry waits Retry-After, and the task succeeds on its first try', async () => {
    oai.faults({ rateLimit: { times: 2, retryAfterS: 1 } });
    const id = await submit('stand-in-chat', 'rate limited');
    await waitFor('succeeded', async () => (await task(id)).status === 'succeeded', 30_000);
    const seen = oai.completions().filter((c) => c.prompt === 'rate limited');
    expect(seen.map((c) => c.status)).toEqual([429, 429, 200]);
    expect(seen[1]!.at - seen[0]!.at).toBeGreaterThanOrEqual(1000);
    expect(seen[2]!.at - seen[1]!.at).toBeGreaterThanOrEqual(1000);
    expect((await task(id)).attempts).toBe(1);
  });

  it('an answered 5xx made nothing and is tried again', async () => {
    oai.faults({ fail: { times: 1, status: 503 } });
    const id = await submit('stand-in-chat', 'five oh three');
    await waitFor('succeeded', async () => (await task(id)).status === 'succeeded', 30_000);
    expect(
      oai
        .completions()
        .filter((c) => c.prompt === 'five oh three')
        .map((c) => c.status),
    ).toEqual([503, 200]);
  });

  it('a stream that breaks mid-way fails the task with completion_interrupted and is not sent again', async () => {
    const id = await submit('stand-in-chat', 'this one [[break]]s');
    const t = await waitFor(
      'failed',
      async () => {
        const cur = await task(id);
        return cur.status === 'failed' ? cur : null;
      },
      30_000,
    );
    expect(t.error.code).toBe('completion_interrupted');
    expect(oai.completions().filter((c) => c.prompt === 'this one [[break]]s')).toHaveLength(1);
  });

  it('an error chunk mid-stream fails the task as the model failing', async () => {
    const id = await submit('stand-in-chat', 'please [[fail]]');
    const t = await waitFor(
      'failed',
      async () => {
        const cur = await task(id);
        return cur.status === 'failed' ? cur : null;
      },
      30_000,
    );
    expect(t.error.code).toBe('provider_failed');
  });

  it('refuses parameters a chat completion does not take, naming them', async () => {
    const res = await call(`${g.url}/api/tasks`, {
      token: alice,
      body: { input_data: { type: 'text', model: 'stand-in-chat', prompt: 'x', images: ['https://a/b.png'] } },
    });
    expect(res.status).toBe(422);
    expect(Object.keys(res.body.errors).join(' ')).toMatch(/images/);
  });
});
