import { TokenSigner } from '../../src/auth/tokens';
import { BACKENDS } from '../helpers/db';
import { call, startGateway, TEST_SECRET, type TestGateway } from '../helpers/gateway';

describe.each(BACKENDS)('REST task API on %s', (backend) => {
  let t: TestGateway;
  let api: string;
  const signer = new TokenSigner(TEST_SECRET);
  const alice = signer.mint('alice');
  const bob = signer.mint('bob');

  beforeAll(async () => {
    t = await startGateway(backend, { auth: true });
    api = `${t.url}/api`;
  });
  afterAll(async () => {
    await t.close();
  });

  const countTasks = async () => Number((await t.gw.db('tasks').count<{ count: string }[]>('* as count'))[0]!.count);
  const post = (body: unknown, token = alice, headers?: Record<string, string>) =>
    call(`${api}/tasks`, { body, token, headers });

  describe('creating tasks', () => {
    it.each([
      ['image', 'google/imagen-4-fast', 'image_gen'],
      ['video', 'bytedance/seedance-1-pro', 'video_gen'],
      ['text', 'gpt-4.1', 'text_gen'],
    ])('type %s gets the default model %s', async (type, model, taskType) => {
      const res = await post({ input_data: { type, prompt: 'Test image' } });
      expect(res.status).toBe(202);
      expect(res.body.task_id).toBe(res.body.data.id);
      expect(res.body.data).toMatchObject({
        model,
        task_type: taskType,
        status: 'queued',
        progress: null,
        attempts: 0,
      });
      expect(res.body.data.topic).toBe(`task:${res.body.task_id}`);
      const stored = await t.gw.db('tasks').where({ id: res.body.task_id }).first();
      expect(stored.model).toBe(model);
    });

    it('a missing type means text, as the old backend did', async () => {
      const res = await post({ input_data: { prompt: 'hello' } });
      expect(res.status).toBe(202);
      expect(res.body.data).toMatchObject({ task_type: 'text_gen', model: 'gpt-4.1' });
    });

    it('takes a model named in input_data or at the top level, and applies parameter defaults', async () => {
      const a = await post({ input_data: { type: 'image', prompt: 'x', model: 'bytedance/seedream-3', size: 'big' } });
      expect(a.status).toBe(202);
      expect(a.body.data.model).toBe('bytedance/seedream-3');
      expect(a.body.data.input_data).toMatchObject({ size: 'big', aspect_ratio: '16:9', guidance_scale: 2.5 });
      const b = await post({
        model: 'claude-sonnet-4-20250514',
        input_data: { type: 'text', prompt: 'x', max_tokens: 2048 },
      });
      expect(b.status).toBe(202);
      expect(b.body.data.model).toBe('claude-sonnet-4-20250514');
      const row = await t.gw.db('tasks').where({ id: b.body.task_id }).first();
      expect(row.provider_model).toBe('anthropic/claude-4-sonnet');
      expect(row.provider_input).toMatchObject({ prompt: 'x', max_tokens: 2048 });
    });

    it('stores the first event of the log, status queued, with task_id and seq 1', async () => {
      const res = await post({ input_data: { type: 'image', prompt: 'x' } });
      const ev = await call(`${api}/tasks/${res.body.task_id}/events`, { token: alice });
      expect(ev.status).toBe(200);
      expect(ev.body.data).toEqual([
        expect.objectContaining({
          seq: 1,
          event: 'status',
          payload: { task_id: res.body.task_id, seq: 1, status: 'queued', progress: null, error: null },
        }),
      ]);
    });
  });

  describe('refused requests name the problem and store nothing', () => {
    const cases: Array<[string, () => Promise<{ status: number; body: any }>, number, string]> = [
      [
        'malformed JSON',
        () =>
          call(`${api}/tasks`, {
            raw: '{"input_data": {',
            token: alice,
            headers: { 'content-type': 'application/json' },
          }),
        400,
        'malformed JSON',
      ],
      ['a body that is not an object', () => post([1, 2]), 422, 'body'],
      ['a JSON string body', () => post('just text'), 422, 'body'],
      ['no input_data', () => post({ prompt: 'x' }), 422, 'input_data'],
      ['input_data not an object', () => post({ input_data: 'x' }), 422, 'input_data'],
      ['missing prompt', () => post({ input_data: { type: 'image' } }), 422, 'prompt'],
      ['empty prompt', () => post({ input_data: { type: 'image', prompt: '   ' } }), 422, 'prompt'],
      [
        'a prompt over 10,000 characters',
        () => post({ input_data: { type: 'image', prompt: 'a'.repeat(10_001) } }),
        422,
        'prompt',
      ],
      ['unknown type', () => post({ input_data: { type: 'audio', prompt: 'x' } }), 422, 'type'],
      ['unknown model', () => post({ input_data: { type: 'image', prompt: 'x', model: 'acme/nope' } }), 422, 'model'],
      [
        'a model of another type',
        () => post({ input_data: { type: 'image', prompt: 'x', model: 'gpt-4.1' } }),
        422,
        'model',
      ],
      [
        'a parameter outside its enum',
        () => post({ input_data: { type: 'image', prompt: 'x', aspect_ratio: '2:1' } }),
        422,
        'aspect_ratio',
      ],
      [
        'a parameter outside its range',
        () => post({ input_data: { type: 'video', prompt: 'x', duration: 60 } }),
        422,
        'duration',
      ],
      [
        'a parameter of the wrong type',
        () => post({ input_data: { type: 'text', prompt: 'x', temperature: 'hot' } }),
        422,
        'temperature',
      ],
      ['an unknown parameter', () => post({ input_data: { type: 'image', prompt: 'x', steps: 50 } }), 422, 'steps'],
      [
        'a parameter another model has (claude has no temperature)',
        () => post({ input_data: { prompt: 'x', model: 'claude-sonnet-4-20250514', temperature: 1 } }),
        422,
        'temperature',
      ],
      [
        'a body over 1 MB',
        () => post({ input_data: { type: 'image', prompt: 'x', pad: 'a'.repeat(1024 * 1024 + 10) } }),
        413,
        'limit',
      ],
      [
        'a non-JSON content type',
        () =>
          call(`${api}/tasks`, {
            raw: 'input_data=x',
            token: alice,
            headers: { 'content-type': 'application/x-www-form-urlencoded' },
          }),
        415,
        'Content-Type',
      ],
    ];
    it.each(cases)('%s', async (_name, send, status, field) => {
      const before = await countTasks();
      const res = await send();
      expect(res.status).toBe(status);
      const text = JSON.stringify(res.body);
      expect(res.body.errors).toBeDefined();
      expect(text).toContain(field);
      expect(await countTasks()).toBe(before);
    });

    it.each([
      [{ type: 'text', prompt: 'x', temperature: 'hot' }, { temperature: ['must be a number'] }],
      [{ type: 'video', prompt: 'x', duration: 3.5 }, { duration: ['must be an integer'] }],
      [{ type: 'video', prompt: 'x', duration: 'abc' }, { duration: ['must be a number'] }],
      [{ type: 'video', prompt: 'x', camera_fixed: 'maybe' }, { camera_fixed: ['must be true or false'] }],
    ])('a value of the wrong type says what type is wanted, not "can\'t be blank": %o', async (input, errors) => {
      const res = await post({ input_data: input });
      expect(res.status).toBe(422);
      expect(res.body.errors).toEqual(errors);
    });

    it('field messages are Phoenix-style lists', async () => {
      const res = await post({ input_data: { type: 'image', prompt: 'x', model: 'gpt-4.1' } });
      expect(res.body).toEqual({ errors: { model: ['is not supported for image_gen'] } });
    });
  });

  describe('who may do what', () => {
    it('no token: 401', async () => {
      const res = await call(`${api}/tasks`, { body: { input_data: { prompt: 'x' } } });
      expect(res.status).toBe(401);
      expect(res.body.errors.detail).toMatch(/missing/);
    });
    it('an expired token: 401', async () => {
      const old = new TokenSigner(TEST_SECRET, 3600, () => Date.now() - 7200_000).mint('alice', 60);
      const res = await call(`${api}/tasks`, { token: old });
      expect(res.status).toBe(401);
      expect(res.body.errors.detail).toMatch(/expired/);
    });
    it('a tampered token: 401', async () => {
      const [v, body, sig] = alice.split('.');
      const claims = JSON.parse(Buffer.from(body!, 'base64url').toString());
      const forged = `${v}.${Buffer.from(JSON.stringify({ ...claims, sub: 'bob' })).toString('base64url')}.${sig}`;
      expect((await call(`${api}/tasks`, { token: forged })).status).toBe(401);
      expect(
        (await call(`${api}/tasks`, { token: new TokenSigner('another-secret-0123456789abcdef0123').mint('alice') }))
          .status,
      ).toBe(401);
      expect((await call(`${api}/tasks`, { token: 'garbage' })).status).toBe(401);
    });
    it("Alice cannot read, list, cancel or see the events of Bob's task", async () => {
      const res = await post({ input_data: { type: 'image', prompt: 'bob private' } }, bob);
      const id = res.body.task_id;
      expect((await call(`${api}/tasks/${id}`, { token: alice })).status).toBe(404);
      expect((await call(`${api}/tasks/${id}/events`, { token: alice })).status).toBe(404);
      expect((await call(`${api}/tasks/${id}/cancel`, { method: 'POST', token: alice })).status).toBe(404);
      const list = await call(`${api}/tasks?limit=200`, { token: alice });
      expect(list.body.data.map((x: { id: string }) => x.id)).not.toContain(id);
      expect((await call(`${api}/tasks/${id}`, { token: bob })).body.data.status).toBe('queued');
    });
  });

  describe('reading, paging and canceling', () => {
    it('GET of an unknown or malformed id is 404', async () => {
      expect((await call(`${api}/tasks/00000000-0000-4000-8000-000000000000`, { token: alice })).status).toBe(404);
      expect((await call(`${api}/tasks/not-a-uuid`, { token: alice })).status).toBe(404);
    });

    it("pages through a user's tasks with a cursor, newest first, and filters by status", async () => {
      const carol = signer.mint('carol');
      const ids: string[] = [];
      for (let i = 0; i < 5; i++)
        ids.push((await post({ input_data: { type: 'image', prompt: `p${i}` } }, carol)).body.task_id);
      const seen: string[] = [];
      let cursor: string | null = null;
      do {
        const page: { status: number; body: any } = await call(
          `${api}/tasks?limit=2${cursor ? `&cursor=${cursor}` : ''}`,
          { token: carol },
        );
        expect(page.status).toBe(200);
        seen.push(...page.body.data.map((x: { id: string }) => x.id));
        cursor = page.body.next_cursor;
      } while (cursor);
      expect(seen).toEqual([...ids].reverse());
      await call(`${api}/tasks/${ids[0]}/cancel`, { method: 'POST', token: carol });
      const canceled = await call(`${api}/tasks?status=canceled`, { token: carol });
      expect(canceled.body.data.map((x: { id: string }) => x.id)).toEqual([ids[0]]);
    });

    it('empty list parameters mean not given (clients that send every key)', async () => {
      const erin = signer.mint('erin');
      const id = (await post({ input_data: { type: 'image', prompt: 'erin' } }, erin)).body.task_id;
      const res = await call(`${api}/tasks?status=&limit=&cursor=`, { token: erin });
      expect(res.status).toBe(200);
      expect(res.body.data.map((x: { id: string }) => x.id)).toEqual([id]);
    });

    it('searches prompts (q: case-insensitive, literal), with the status filter and paged by the same cursor', async () => {
      const dora = signer.mint('dora');
      const make = async (prompt: string) =>
        (await post({ input_data: { type: 'image', prompt } }, dora)).body.task_id as string;
      const fox1 = await make('A red FOX in snow');
      await make('A lighthouse at dusk');
      const fox2 = await make('the fox, 100% asleep');
      const fox3 = await make('Foxes_and_hounds');
      await make('a box of 100 apples');
      const ids = async (query: string) => {
        const res = await call(`${api}/tasks?${query}`, { token: dora });
        expect(res.status).toBe(200);
        return res.body.data.map((x: { id: string }) => x.id);
      };
      expect(await ids('q=fox')).toEqual([fox3, fox2, fox1]);
      expect(await ids(`q=${encodeURIComponent('FOX')}&status=queued`)).toEqual([fox3, fox2, fox1]);
      // % and _ are the characters themselves, not LIKE's wildcards.
      expect(await ids(`q=${encodeURIComponent('100%')}`)).toEqual([fox2]);
      expect(await ids(`q=${encodeURIComponent('s_a')}`)).toEqual([fox3]);
      expect(await ids(`q=${encodeURIComponent('x%a')}`)).toEqual([]);
      // Paged like the whole list: the cursor of a filtered page continues the same filter.
      const first = await call(`${api}/tasks?q=fox&limit=2`, { token: dora });
      expect(first.body.data.map((x: { id: string }) => x.id)).toEqual([fox3, fox2]);
      expect(first.body.next_cursor).toEqual(expect.any(String));
      const second = await call(`${api}/tasks?q=fox&limit=2&cursor=${first.body.next_cursor}`, { token: dora });
      expect(second.body.data.map((x: { id: string }) => x.id)).toEqual([fox1]);
      expect(second.body.next_cursor).toBeNull();
      await call(`${api}/tasks/${fox2}/cancel`, { method: 'POST', token: dora });
      expect(await ids('q=fox&status=canceled')).toEqual([fox2]);
      expect(await ids('q=fox&status=queued')).toEqual([fox3, fox1]);
      // Another user's prompts are not searched.
      expect((await call(`${api}/tasks?q=fox`, { token: bob })).body.data).toEqual([]);
    });

    it('ignores top-level keys other than input_data and model, as the old backend did', async () => {
      const res = await post({ input_data: { type: 'image', prompt: 'extra keys' }, client: 'ios', version: 3 });
      expect(res.status).toBe(202);
      expect(res.body.data.model).toBe('google/imagen-4-fast');
      expect(res.body.data.input_data).not.toHaveProperty('client');
    });

    it.each([
      ['status=bogus', 'status'],
      ['limit=0', 'limit'],
      ['limit=abc', 'limit'],
      ['cursor=%%%', 'cursor'],
    ])('refuses list query %s', async (q, field) => {
      const res = await call(`${api}/tasks?${q}`, { token: alice });
      expect(res.status).toBe(422);
      expect(res.body.errors[field]).toBeDefined();
    });

    it.each(
      (
        [
          ['status=bogus', { status: ['must be one of: queued, processing, succeeded, failed, canceled'] }],
          ['status=queued&status=failed', { status: ['must be given once'] }],
          ['limit=201', { limit: ['must be an integer from 1 to 200'] }],
          ['limit=1.5', { limit: ['must be an integer from 1 to 200'] }],
          [`q=${'a'.repeat(201)}`, { q: ['should have at most 200 characters'] }],
          ['q=a&q=b', { q: ['must be given once'] }],
          ['q=a%00b', { q: ['must not contain the NUL character (U+0000)'] }],
          ['cursor=eHl6', { cursor: ['is invalid: pass the next_cursor of the previous page as it is'] }],
          ['status=nope&limit=0&q=ok', { status: [expect.any(String)], limit: [expect.any(String)] }],
        ] as Array<[string, Record<string, unknown>]>
      ).map(([q, errors]) => [q.length > 40 ? `${q.slice(0, 8)}… (${q.length} characters)` : q, q, errors]),
    )('list query %s is refused naming the parameter', async (_shown, q, errors) => {
      const res = await call(`${api}/tasks?${q}`, { token: alice });
      expect(res.status).toBe(422);
      expect(res.body.errors).toEqual(errors);
    });

    it('cancels a queued task at once, idempotently, with status and final events', async () => {
      const id = (await post({ input_data: { type: 'image', prompt: 'x' } })).body.task_id;
      const a = await call(`${api}/tasks/${id}/cancel`, { method: 'POST', token: alice });
      expect(a.status).toBe(200);
      expect(a.body.data.status).toBe('canceled');
      expect(a.body.data.completed_at).not.toBeNull();
      const b = await call(`${api}/tasks/${id}/cancel`, { method: 'POST', token: alice });
      expect(b.status).toBe(200);
      expect(b.body.data).toEqual(a.body.data);
      const ev = (await call(`${api}/tasks/${id}/events`, { token: alice })).body.data;
      expect(ev.map((e: { seq: number; event: string }) => [e.seq, e.event])).toEqual([
        [1, 'status'],
        [2, 'status'],
        [3, 'image_response'],
      ]);
      expect(ev[2].payload).toMatchObject({ task_id: id, seq: 3, status: 'failed', error: { code: 'canceled' } });
      const after = await call(`${api}/tasks/${id}/events?after_seq=2`, { token: alice });
      expect(after.body.data.map((e: { seq: number }) => e.seq)).toEqual([3]);
    });
  });

  describe('Idempotency-Key', () => {
    it('20 concurrent requests with one key and body create exactly one task', async () => {
      const dave = signer.mint('dave');
      const body = { input_data: { type: 'image', prompt: 'once only' } };
      const answers = await Promise.all(
        Array.from({ length: 20 }, () => post(body, dave, { 'idempotency-key': 'key-concurrent-1' })),
      );
      const statuses = answers.map((a) => a.status);
      expect(statuses.every((s) => s === 202 || s === 409)).toBe(true);
      const ids = new Set(answers.filter((a) => a.status === 202).map((a) => a.body.task_id));
      expect(ids.size).toBe(1);
      const rows = await t.gw.db('tasks').where({ user_id: 'dave' });
      expect(rows).toHaveLength(1);
      // Once the first is done, the same key and body replay its answer.
      const again = await post(body, dave, { 'idempotency-key': 'key-concurrent-1' });
      expect(again.status).toBe(202);
      expect(again.body.task_id).toBe(rows[0].id);
      expect(again.headers.get('idempotent-replayed')).toBe('true');
    });

    it('the same key with a different body is 409 and stores nothing', async () => {
      const first = await post({ input_data: { type: 'image', prompt: 'a' } }, alice, { 'idempotency-key': 'k-diff' });
      expect(first.status).toBe(202);
      const before = await countTasks();
      const second = await post({ input_data: { type: 'image', prompt: 'b' } }, alice, { 'idempotency-key': 'k-diff' });
      expect(second.status).toBe(409);
      expect(second.body.errors.detail).toMatch(/different request body/);
      expect(await countTasks()).toBe(before);
    });

    it('keys are per user, and a refused request frees its key', async () => {
      const a = await post({ input_data: { type: 'image', prompt: 'a' } }, alice, { 'idempotency-key': 'k-shared' });
      const b = await post({ input_data: { type: 'image', prompt: 'a' } }, bob, { 'idempotency-key': 'k-shared' });
      expect(a.status).toBe(202);
      expect(b.status).toBe(202);
      expect(a.body.task_id).not.toBe(b.body.task_id);
      const bad = await post({ input_data: { type: 'image', prompt: '' } }, alice, { 'idempotency-key': 'k-fix' });
      expect(bad.status).toBe(422);
      const good = await post({ input_data: { type: 'image', prompt: 'fixed' } }, alice, {
        'idempotency-key': 'k-fix',
      });
      expect(good.status).toBe(202);
    });

    it('refuses a malformed key', async () => {
      const res = await post({ input_data: { prompt: 'x' } }, alice, { 'idempotency-key': 'has spaces in it' });
      expect(res.status).toBe(400);
      expect(res.body.errors['Idempotency-Key']).toBeDefined();
    });
  });

  describe('service routes', () => {
    it('GET /api/models serves the registry with schemas and defaults', async () => {
      const res = await call(`${api}/models`);
      expect(res.status).toBe(200);
      const names = res.body.data.map((m: { name: string }) => m.name);
      expect(names).toEqual([
        'google/imagen-4-fast',
        'bytedance/seedream-3',
        'bytedance/seedance-1-pro',
        'gpt-4.1',
        'claude-sonnet-4-20250514',
        'gemini-2.5-flash-lite',
        'gpt-4o-mini',
      ]);
      // Demo mode shows both providers: the OpenAI-compatible one runs on its stand-in.
      expect(res.body.data.map((m: { provider: string }) => m.provider)).toEqual([
        ...Array(6).fill('replicate'),
        'openai',
      ]);
      const imagen = res.body.data[0];
      expect(imagen.default).toBe(true);
      expect(imagen.input_schema.properties.aspect_ratio.enum).toEqual(['1:1', '9:16', '16:9', '3:4', '4:3']);
      expect(imagen.input_schema.additionalProperties).toBe(false);
    });
    it('/healthz and /readyz answer', async () => {
      expect((await call(`${t.url}/healthz`)).body).toEqual({ status: 'ok' });
      expect((await call(`${t.url}/readyz`)).status).toBe(200);
    });
    it('an unknown API route is a JSON 404', async () => {
      const res = await call(`${api}/nope`, { token: alice });
      expect(res.status).toBe(404);
      expect(res.body.errors.detail).toMatch(/no route/);
    });
    it('every answer carries a request id', async () => {
      const res = await call(`${t.url}/healthz`, { headers: { 'x-request-id': 'abc-123' } });
      expect(res.headers.get('x-request-id')).toBe('abc-123');
    });
  });
});
