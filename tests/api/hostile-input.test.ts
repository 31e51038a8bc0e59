/**
 * Hostile input over REST and the channel: names Object.prototype has, bodies nested too deeply.
 * Each is refused with a 4xx or an error reply naming the problem; never a 500 or a crashed channel.
 */
import { randomUUID } from 'node:crypto';
import type { Socket } from 'phoenix';
import { TokenSigner } from '../../src/auth/tokens';
import { BACKENDS } from '../helpers/db';
import { call, startGateway, TEST_SECRET, type TestGateway } from '../helpers/gateway';
import { joinRecording, phoenixSocket, push } from '../channels/helpers';
import { RawClient } from '../realtime/helpers';

const signer = new TokenSigner(TEST_SECRET);
const alice = signer.mint('alice');

/** The names the issue found: each is an own key of a parsed JSON object, and a property of every `{}`. */
const PROTOTYPE_NAMES = ['constructor', '__proto__', 'toString', 'hasOwnProperty', 'valueOf'];

/** A JSON text with `key` as a literal key (a JS object literal would treat `__proto__` specially). */
const withKey = (key: string, value = 1) => `{"prompt":"a cat","${key}":${JSON.stringify(value)}}`;

describe.each(BACKENDS)('hostile input on %s', (backend) => {
  let t: TestGateway;
  const sockets: Socket[] = [];

  beforeAll(async () => {
    t = await startGateway(backend, { auth: true });
  });
  afterEach(() => {
    for (const s of sockets.splice(0)) s.disconnect();
  });
  afterAll(async () => {
    await t.close();
  });

  const post = (raw: string, headers: Record<string, string> = {}) =>
    call(`${t.url}/api/tasks`, { raw, token: alice, headers: { 'content-type': 'application/json', ...headers } });
  const taskCount = async () => Number((await t.gw.db('tasks').count({ n: '*' }))[0]!.n);

  /** A joined task channel on a fresh id, recording any phx_error it gets before the test disconnects. */
  const freshChannel = async () => {
    const socket = phoenixSocket(t.url, alice);
    sockets.push(socket);
    const { channel, joined } = joinRecording(socket, `task:${randomUUID()}`);
    const errors: unknown[] = [];
    channel.on('phx_error', (p) => {
      errors.push(p);
    });
    await joined;
    return { channel, errors };
  };

  describe('object keys named like Object.prototype members are plain unknown keys', () => {
    it.each(PROTOTYPE_NAMES)('%s in input_data: 422 naming the field, nothing stored', async (key) => {
      const before = await taskCount();
      for (const type of ['image', 'video', 'text']) {
        const res = await post(`{"input_data":${withKey(key).replace('{', `{"type":"${type}",`)}}`);
        expect(res.status).toBe(422);
        expect(Object.keys(res.body.errors)).toEqual([key]);
        expect(res.body.errors[key]).toEqual([expect.stringMatching(/^is not a parameter of /)]);
      }
      expect(await taskCount()).toBe(before);
    });

    it.each(PROTOTYPE_NAMES)('%s as the value of type or model: 422 naming that field', async (name) => {
      const type = await post(`{"input_data":{"prompt":"a cat","type":"${name}"}}`);
      expect(type.status).toBe(422);
      expect(type.body.errors).toEqual({ type: ['must be one of: image, video, text'] });
      const model = await post(`{"input_data":{"prompt":"a cat","model":"${name}"}}`);
      expect(model.status).toBe(422);
      expect(model.body.errors).toEqual({ model: ['is not a known model (see GET /api/models)'] });
    });

    it('a prototype-named key does not hide a real error next to it, nor make an invalid body valid', async () => {
      const res = await post(
        '{"input_data":{"prompt":"","__proto__":{"prompt":"x"},"aspect_ratio":"9:9","type":"image"}}',
      );
      expect(res.status).toBe(422);
      // Parsed from text: in an object literal `__proto__:` would set the prototype, not a key.
      expect(res.body.errors).toEqual(
        JSON.parse(
          '{"prompt":["can\'t be blank"],"__proto__":["is not a parameter of google/imagen-4-fast"],' +
            '"aspect_ratio":["must be one of: 1:1, 9:16, 16:9, 3:4, 4:3"]}',
        ),
      );
      expect(Object.keys(res.body.errors).sort()).toEqual(['__proto__', 'aspect_ratio', 'prompt']);
    });

    it.each(PROTOTYPE_NAMES)('%s in an image_generate payload: an error reply, the channel lives on', async (key) => {
      const { channel, errors } = await freshChannel();
      const reply = await push(channel, 'image_generate', JSON.parse(withKey(key)));
      expect(reply.status).toBe('error');
      expect(reply.response.reason).toBe('invalid input');
      expect(Object.keys(reply.response.errors)).toEqual([key]);
      // The same channel still answers: a good payload makes the task.
      const ok = await push(channel, 'image_generate', { prompt: 'a cat' });
      expect(ok.status).toBe('ok');
      expect(errors).toEqual([]);
    });

    it.each(PROTOTYPE_NAMES)('%s as an event name: an error reply naming the event', async (name) => {
      const { channel, errors } = await freshChannel();
      const reply = await push(channel, name, { prompt: 'a cat' });
      expect(reply).toEqual({ status: 'error', response: { reason: `unknown event "${name}"` } });
      expect(errors).toEqual([]);
    });
  });
  describe('deeply nested JSON is refused before anything walks it', () => {
    /** `levels` arrays one inside another around 1: `[[1]]` is 2 levels. */
    const nested = (levels: number) => `${'['.repeat(levels)}1${']'.repeat(levels)}`;
    const body = (levels: number) => `{"input_data":{"prompt":"a cat"},"client_note":${nested(levels - 1)}}`;

    it('a body 32 levels deep is taken; 33 and 100,000 levels get 400 naming the limit, with or without Idempotency-Key', async () => {
      const before = await taskCount();
      expect((await post(body(32))).status).toBe(202);
      expect((await post(body(32), { 'idempotency-key': `k-${randomUUID()}` })).status).toBe(202);
      for (const levels of [33, 100_000]) {
        for (const headers of [{} as Record<string, string>, { 'idempotency-key': `k-${randomUUID()}` }]) {
          const res = await post(body(levels), headers);
          expect(res.status).toBe(400);
          expect(res.body).toEqual({ errors: { detail: 'request body is nested more than 32 levels deep' } });
        }
      }
      // Nested objects count the same as arrays; input_data itself is checked too.
      const objects = `{"input_data":{"prompt":"a cat","images":${'{"a":'.repeat(40)}1${'}'.repeat(40)}}}`;
      expect((await post(objects)).status).toBe(400);
      expect(await taskCount()).toBe(before + 2);
    });

    it('a refused deep body frees its Idempotency-Key', async () => {
      const key = `k-${randomUUID()}`;
      expect((await post(body(40), { 'idempotency-key': key })).status).toBe(400);
      expect((await post(body(2), { 'idempotency-key': key })).status).toBe(202);
    });

    it('a channel payload nested too deeply gets an error reply naming the limit; the channel and socket live on', async () => {
      const { channel, errors } = await freshChannel();
      const reply = await push(channel, 'image_generate', JSON.parse(`{"prompt":"a cat","x":${nested(32)}}`));
      expect(reply).toEqual({ status: 'error', response: { reason: 'payload is nested more than 32 levels deep' } });
      const ok = await push(channel, 'image_generate', { prompt: 'a cat', aspect_ratio: '16:9' });
      expect(ok.status).toBe('ok');
      expect(errors).toEqual([]);
    });

    it('30,000 levels in one frame (more than a client JSON.stringify can make): the same error reply', async () => {
      const raw = await RawClient.connect(`${t.url.replace(/^http/, 'ws')}/socket/websocket?vsn=2.0.0&token=${alice}`);
      try {
        const topic = `task:${randomUUID()}`;
        raw.send(['1', '1', topic, 'phx_join', {}]);
        expect(await raw.json()).toMatchObject(['1', '1', topic, 'phx_reply', { status: 'ok' }]);
        raw.sendText(`["1","2","${topic}","image_generate",{"prompt":"a cat","x":${nested(30_000)}}]`);
        expect(await raw.json()).toEqual([
          '1',
          '2',
          topic,
          'phx_reply',
          { status: 'error', response: { reason: 'payload is nested more than 32 levels deep' } },
        ]);
        raw.send(['1', '3', topic, 'image_generate', { prompt: 'a cat' }]);
        expect(await raw.json()).toMatchObject(['1', '3', topic, 'phx_reply', { status: 'ok' }]);
      } finally {
        raw.ws.close();
      }
    });

    it('a join payload nested too deeply is refused with the same reason', async () => {
      const socket = phoenixSocket(t.url, alice);
      sockets.push(socket);
      const { joined } = joinRecording(socket, `task:${randomUUID()}`, JSON.parse(`{"x":${nested(40)}}`));
      await expect(joined).rejects.toMatchObject({
        response: { reason: 'payload is nested more than 32 levels deep' },
      });
    });
  });
  describe('text PostgreSQL cannot store (jsonb refuses NUL and unpaired surrogates) is a 422 naming the field', () => {
    const cases: Array<[string, string, string]> = [
      ['prompt', '{"prompt":"a\\u0000b"}', 'must not contain the NUL character (U+0000)'],
      ['prompt', '{"prompt":"a\\ud800b"}', 'must be valid Unicode text (it has an unpaired surrogate)'],
      ['prompt', '{"prompt":"\\udfff"}', 'must be valid Unicode text (it has an unpaired surrogate)'],
      ['system_prompt', '{"prompt":"a","system_prompt":"x\\u0000"}', 'must not contain the NUL character (U+0000)'],
    ];
    it.each(cases)('%s: %s', async (field, input, message) => {
      const before = await taskCount();
      const res = await post(`{"input_data":${input}}`);
      expect(res.status).toBe(422);
      expect(res.body.errors).toEqual({ [field]: [message] });
      const { channel, errors } = await freshChannel();
      const reply = await push(channel, 'text_generate', JSON.parse(input));
      expect(reply).toEqual({ status: 'error', response: { reason: 'invalid input', errors: { [field]: [message] } } });
      expect(errors).toEqual([]);
      expect(await taskCount()).toBe(before);
    });

    it('a proper surrogate pair (an emoji) is taken and stored as sent', async () => {
      const res = await post('{"input_data":{"prompt":"a \\ud83d\\udc31 and 👩‍👩‍👧‍👦"}}');
      expect(res.status).toBe(202);
      expect(res.body.data.input_data.prompt).toBe('a 🐱 and 👩‍👩‍👧‍👦');
    });
  });
});
