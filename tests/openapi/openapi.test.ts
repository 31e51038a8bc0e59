import { execFile } from 'node:child_process';
import path from 'node:path';
import Ajv2020 from 'ajv/dist/2020';
import addFormats from 'ajv-formats';
import { ModelRegistry } from '../../src/tasks/models';
import { call, startGateway, type TestGateway } from '../helpers/gateway';

const ROOT = path.join(__dirname, '..', '..');

/** @seriousme/openapi-schema-validator is ESM only: run it in a child process of its own. */
function validateOpenApi(doc: unknown): Promise<{ valid: boolean; version?: string; errors?: unknown }> {
  const script = `
    import { Validator } from '@seriousme/openapi-schema-validator';
    let input = '';
    for await (const c of process.stdin) input += c;
    const v = new Validator();
    const res = await v.validate(JSON.parse(input));
    process.stdout.write(JSON.stringify({ valid: res.valid, version: v.version, errors: res.errors }));
  `;
  return new Promise((resolve, reject) => {
    const child = execFile(
      process.execPath,
      ['--input-type=module', '-e', script],
      { cwd: ROOT },
      (err, stdout, stderr) => {
        if (err) reject(new Error(`validator failed: ${stderr || err.message}`));
        else resolve(JSON.parse(stdout));
      },
    );
    child.stdin!.end(JSON.stringify(doc));
  });
}

/** Bodies for POST /api/tasks: those tests/api/tasks.test.ts sees refused, and good ones. */
const BODIES: Array<[string, unknown]> = [
  // refused
  ['a body that is not an object', [1, 2]],
  ['a JSON string body', 'just text'],
  ['no input_data', { prompt: 'x' }],
  ['input_data not an object', { input_data: 'x' }],
  ['missing prompt', { input_data: { type: 'image' } }],
  ['empty prompt', { input_data: { type: 'image', prompt: '' } }],
  ['a blank prompt', { input_data: { type: 'image', prompt: '   ' } }],
  ['a prompt over 10,000 characters', { input_data: { type: 'image', prompt: 'a'.repeat(10_001) } }],
  ['a prompt that is not a string', { input_data: { type: 'image', prompt: 42 } }],
  ['unknown type', { input_data: { type: 'audio', prompt: 'x' } }],
  ['unknown model', { input_data: { type: 'image', prompt: 'x', model: 'acme/nope' } }],
  ['a model of another type', { input_data: { type: 'image', prompt: 'x', model: 'gpt-4.1' } }],
  [
    'a text model with no type given is text: an image model is refused',
    { input_data: { prompt: 'x', model: 'google/imagen-4-fast' } },
  ],
  ['a parameter outside its enum', { input_data: { type: 'image', prompt: 'x', aspect_ratio: '2:1' } }],
  ['a parameter outside its range', { input_data: { type: 'video', prompt: 'x', duration: 60 } }],
  [
    'a last frame without a first image',
    { input_data: { type: 'video', prompt: 'x', last_frame_image: 'https://example.com/b.png' } },
  ],
  ['a fractional integer', { input_data: { type: 'video', prompt: 'x', duration: 5.5 } }],
  ['a parameter of the wrong type', { input_data: { type: 'text', prompt: 'x', temperature: 'hot' } }],
  ['an unknown parameter', { input_data: { type: 'image', prompt: 'x', steps: 50 } }],
  [
    'a parameter another model has (claude has no temperature)',
    { input_data: { prompt: 'x', model: 'claude-sonnet-4-20250514', temperature: 1 } },
  ],
  ['a non-http image URL', { input_data: { type: 'video', prompt: 'x', image: 'ftp://example.com/a.png' } }],
  [
    'too many images',
    {
      input_data: {
        prompt: 'x',
        model: 'claude-sonnet-4-20250514',
        images: ['https://a.example/1.png', 'https://a.example/2.png'],
      },
    },
  ],
  [
    'top-level and input_data models that differ',
    { model: 'bytedance/seedream-3', input_data: { type: 'image', prompt: 'x', model: 'google/imagen-4-fast' } },
  ],
  ['an unknown top-level model', { model: 'acme/nope', input_data: { type: 'image', prompt: 'x' } }],
  [
    'a Seedream size without aspect_ratio custom',
    { input_data: { type: 'image', prompt: 'x', model: 'bytedance/seedream-3', width: 1024 } },
  ],
  // accepted
  ['a provider_model name as the model', { input_data: { type: 'text', prompt: 'x', model: 'openai/gpt-4.1' } }],
  ['an extra top-level key is ignored', { input_data: { type: 'image', prompt: 'x' }, priority: 1 }],
  ['an image with the default model', { input_data: { type: 'image', prompt: 'a cat' } }],
  [
    'a named image model with parameters',
    {
      input_data: {
        type: 'image',
        prompt: 'a cat',
        model: 'bytedance/seedream-3',
        aspect_ratio: 'custom',
        width: 1024,
        guidance_scale: 3.5,
        seed: 7,
      },
    },
  ],
  ['a top-level model', { model: 'bytedance/seedream-3', input_data: { type: 'image', prompt: 'a cat' } }],
  [
    'the same model at both levels',
    { model: 'google/imagen-4-fast', input_data: { type: 'image', prompt: 'x', model: 'google/imagen-4-fast' } },
  ],
  ['a task type name as type', { input_data: { type: 'image_gen', prompt: 'a cat' } }],
  [
    'a video with an image URL',
    {
      input_data: {
        type: 'video',
        prompt: 'a cat',
        image: 'https://example.com/cat.png',
        duration: 2,
        camera_fixed: true,
      },
    },
  ],
  ['no type means text', { input_data: { prompt: 'hello' } }],
  ['a null model means the default', { input_data: { type: 'text', prompt: 'hello', model: null } }],
  ['an empty model means the default', { input_data: { type: 'image', prompt: 'hello', model: '' } }],
  [
    'a text model with its parameters',
    {
      input_data: {
        type: 'text',
        prompt: 'hello',
        model: 'gemini-2.5-flash-lite',
        temperature: 0.2,
        thinking_budget: 0,
        images: [],
      },
    },
  ],
  [
    'claude with an image',
    {
      input_data: {
        prompt: 'hello',
        model: 'claude-sonnet-4-20250514',
        images: ['https://example.com/a.png'],
        max_tokens: 2048,
      },
    },
  ],
];

describe('GET /api/openapi.json', () => {
  let g: TestGateway;
  let doc: any;

  beforeAll(async () => {
    g = await startGateway('pglite', { auth: true });
    const res = await call(`${g.url}/api/openapi.json`);
    expect(res.status).toBe(200);
    doc = res.body;
  });

  afterAll(async () => {
    await g?.close();
  });

  test('is a valid OpenAPI 3.1 document covering the REST routes', async () => {
    const res = await validateOpenApi(doc);
    expect(res.errors ?? null).toBeFalsy();
    expect(res).toMatchObject({ valid: true, version: '3.1' });
    expect(Object.keys(doc.paths)).toEqual(
      expect.arrayContaining([
        '/api/tasks',
        '/api/tasks/{id}',
        '/api/tasks/{id}/cancel',
        '/api/tasks/{id}/events',
        '/api/models',
        '/healthz',
        '/readyz',
        '/metrics',
      ]),
    );
    expect(Object.keys(doc.paths['/api/tasks'])).toEqual(expect.arrayContaining(['get', 'post']));
    expect(Object.keys(doc.paths['/api/tasks'].post.responses)).toEqual(expect.arrayContaining(['202', '401', '422']));
  });

  test('the list parameters are those GET /api/tasks takes, and refuse what it refuses', async () => {
    const params: any[] = doc.paths['/api/tasks'].get.parameters;
    expect(params.map((p) => p.name)).toEqual(['status', 'q', 'limit', 'cursor']);
    const ajv = new Ajv2020({ strict: false });
    const schemaOf = (name: string) => ajv.compile(params.find((p) => p.name === name).schema);
    const alice = g.gw.auth.signer!.mint('alice');
    const tries: Array<[string, string | number]> = [
      ['status', 'failed'],
      ['status', 'done'],
      ['q', 'a'.repeat(200)],
      ['q', 'a'.repeat(201)],
      ['limit', 200],
      ['limit', 201],
      ['limit', 0],
    ];
    const disagreements: string[] = [];
    for (const [name, value] of tries) {
      const res = await call(`${g.url}/api/tasks?${name}=${encodeURIComponent(String(value))}`, { token: alice });
      expect([200, 422]).toContain(res.status);
      const schemaAccepts = schemaOf(name)(value) as boolean;
      if ((res.status === 200) !== schemaAccepts)
        disagreements.push(`${name}=${String(value).slice(0, 20)}: API ${res.status}, schema ${schemaAccepts}`);
    }
    expect(disagreements).toEqual([]);
  });

  test("has each model's input schema, with the limits of its zod schema", () => {
    const models = new ModelRegistry().models;
    for (const m of models) {
      const s = doc.components.schemas[`Input.${m.name.replace(/[^A-Za-z0-9._-]/g, '_')}`];
      expect(s).toBeDefined();
      expect(s.properties.model).toEqual(
        m.providerModel === m.name ? { const: m.name } : expect.objectContaining({ enum: [m.name, m.providerModel] }), // the provider's name is an alias
      );
      expect(s.additionalProperties).toBe(false);
    }
    const seedream = doc.components.schemas['Input.bytedance_seedream-3'];
    expect(seedream.properties.width).toMatchObject({ type: 'integer', minimum: 512, maximum: 2048 });
  });

  test('the request schema refuses what POST /api/tasks refuses, and accepts what it accepts', async () => {
    const ajv = new Ajv2020({ strict: false, allErrors: true });
    addFormats(ajv);
    ajv.addSchema(doc, 'openapi.json');
    const validate = ajv.compile({ $ref: 'openapi.json#/components/schemas/CreateTaskRequest' });
    const alice = g.gw.auth.signer!.mint('alice');
    const disagreements: string[] = [];
    for (const [name, body] of BODIES) {
      const res = await call(`${g.url}/api/tasks`, { body, token: alice });
      const apiAccepts = res.status === 202;
      expect([202, 422]).toContain(res.status);
      const schemaAccepts = validate(body) as boolean;
      if (apiAccepts !== schemaAccepts) {
        disagreements.push(
          `${name}: API ${res.status} ${JSON.stringify(res.body?.errors ?? '')}, schema ${schemaAccepts ? 'accepts' : 'refuses'}`,
        );
      }
    }
    expect(disagreements).toEqual([]);
    // Both kinds were exercised.
    expect(BODIES.filter(([n]) => n).length).toBeGreaterThan(30);
  });
});
