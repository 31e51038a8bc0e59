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
      expect(type.body.errors).toEqual({ type: ['is invalid: must be one of image, video, text'] });
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
          '{"prompt":["can\'t be blank"],"__proto__":["is not a parameter of google/imagen-4-fast"],"aspect_ratio":["must be one of: 1:1, 9:16, 16:9, 3:4, 4:3"]}',
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
});
