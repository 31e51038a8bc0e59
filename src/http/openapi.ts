import { Router } from 'express';
import { z } from 'zod';
import { kindOf, outputsText, taskEventSchema, TASK_KINDS, TASK_TYPES, type TaskType } from '../tasks/events';
import { inputJsonSchema, type ModelRegistry, type ModelSpec } from '../tasks/models';
import { TASK_STATUSES, taskSchema } from '../tasks/task';
import { DEFAULT_PAGE, MAX_PAGE, MAX_SEARCH_CHARS } from '../tasks/list-query';

type Schema = Record<string, unknown>;

const ref = (name: string): Schema => ({ $ref: `#/components/schemas/${name}` });

/** A component name for a model's input (`google/imagen-4-fast` → `Input.google_imagen-4-fast`). */
export function modelSchemaName(model: string): string {
  return `Input.${model.replace(/[^A-Za-z0-9._-]/g, '_')}`;
}

/** The client's names for a task type: `image` and `image_gen` both mean image_gen. */
function typeNames(t: TaskType): string[] {
  return [kindOf(t).kind, t];
}

/** Refusals the REST API makes that zod's JSON Schema does not carry. */
function tighten(props: Record<string, Schema>): Record<string, Schema> {
  const out: Record<string, Schema> = {};
  for (const [k, v] of Object.entries(props)) {
    let p = { ...v };
    // The models' URLs are http(s) only; format "uri" alone would take any scheme.
    if (p.format === 'uri' && p.pattern === undefined) p = { ...p, pattern: '^https?://' };
    if (p.type === 'array' && typeof p.items === 'object' && p.items)
      p = { ...p, items: tighten({ i: p.items as Schema }).i };
    out[k] = p;
  }
  return out;
}

/** The names that choose the model: its own, and the provider's (`provider_model`) as an alias. */
function modelName(m: ModelSpec): Schema {
  return m.providerModel === m.name
    ? { const: m.name }
    : { enum: [m.name, m.providerModel], description: `${m.providerModel} (its provider_model) is an alias` };
}

/**
 * One model's `input_data`, from its zod schema (the same one REST and channels validate with).
 * `model` says how the model is named: `named` (model required, this one), `default` (no model,
 * or null or "": the type's default) or `top-level` (the body's top-level model names it, so
 * input_data may name it again or not at all).
 */
function inputData(m: ModelSpec, how: 'named' | 'default' | 'top-level'): Schema {
  const base = inputJsonSchema(m) as { properties: Record<string, Schema> };
  const { prompt, ...params } = base.properties;
  const modelProp: Schema =
    how === 'default'
      ? { enum: [null, ''], description: 'absent, null or "": the default model for the type' }
      : modelName(m);
  const textDefault = outputsText(m.taskType);
  const typeProp: Schema = textDefault
    ? { enum: [...typeNames(m.taskType), null], description: 'absent or null means text' }
    : { enum: typeNames(m.taskType) };
  const required = ['prompt', ...(textDefault ? [] : ['type']), ...(how === 'named' ? ['model'] : [])];
  return {
    type: 'object',
    properties: {
      type: typeProp,
      model: modelProp,
      // A prompt of only white space is refused ("can't be blank").
      prompt: { ...prompt, pattern: '\\S' },
      ...tighten(params as Record<string, Schema>),
    },
    required,
    additionalProperties: false,
    ...(m.jsonSchemaRules ?? {}),
  };
}

/** The request body of POST /api/tasks, as the REST API accepts it. */
function createTaskRequest(registry: ModelRegistry): Schema {
  const variants: Schema[] = [];
  for (const m of registry.models) {
    variants.push({
      type: 'object',
      title: `${m.name} (named in input_data)`,
      properties: { input_data: inputData(m, 'named') },
      required: ['input_data'],
      // Other top-level keys are ignored; a top-level `model` belongs to the variant below.
      not: { required: ['model'] },
    });
    variants.push({
      type: 'object',
      title: `${m.name} (named at the top level)`,
      properties: { model: modelName(m), input_data: inputData(m, 'top-level') },
      required: ['input_data', 'model'],
    });
    if (m.isDefault) {
      variants.push({
        type: 'object',
        title: `${m.name} (the default for ${m.taskType})`,
        properties: { input_data: inputData(m, 'default') },
        required: ['input_data'],
        not: { required: ['model'] },
      });
    }
  }
  return {
    description:
      '`input_data` holds `type` (image, video or text; text when absent), `prompt`, an optional `model` ' +
      "(the default for the type when absent) and that model's parameters. A top-level `model` is accepted too; " +
      'other top-level keys are ignored.',
    anyOf: variants,
  };
}

const errorBody: Schema = {
  type: 'object',
  properties: {
    errors: {
      type: 'object',
      description: '`{"detail": "..."}`, or field messages `{"field": ["message", ...]}` for validation (422)',
      additionalProperties: { oneOf: [{ type: 'string' }, { type: 'array', items: { type: 'string' } }] },
    },
  },
  required: ['errors'],
};

/** A component schema from the contract's zod schema (the same one the TypeScript types come from). */
function fromZod(schema: z.ZodType, description?: string): Schema {
  const { $schema: _dialect, ...out } = z.toJSONSchema(schema, { io: 'input', unrepresentable: 'any' }) as Schema;
  return description ? { ...out, description } : out;
}

const json = (schema: Schema, description: string) => ({ description, content: { 'application/json': { schema } } });
const err = (description: string) => json(ref('Error'), description);
const taskIdParam = { name: 'id', in: 'path', required: true, schema: { type: 'string', format: 'uuid' } };

/** Answers every authenticated operation can give. */
const commonErrors = () => ({ 401: err('missing or bad credentials'), 429: err('rate limited (see Retry-After)') });

/** /api/tasks: create (POST) and list (GET). */
function tasksCollectionPaths(): Schema {
  const common = commonErrors();
  return {
    '/api/tasks': {
      post: {
        operationId: 'createTask',
        summary: 'Create a task',
        parameters: [
          {
            name: 'Idempotency-Key',
            in: 'header',
            required: false,
            schema: { type: 'string', minLength: 1, maxLength: 255 },
            description: 'the same key and body within 24 h returns the first answer',
          },
        ],
        requestBody: { required: true, content: { 'application/json': { schema: ref('CreateTaskRequest') } } },
        responses: {
          202: json(
            {
              type: 'object',
              properties: { task_id: { type: 'string', format: 'uuid' }, data: ref('Task') },
              required: ['task_id', 'data'],
            },
            'accepted: the task is queued',
          ),
          400: err('malformed JSON'),
          ...common,
          409: err('Idempotency-Key reused with another body, or still in flight'),
          413: err('body too large'),
          415: err('Content-Type is not application/json'),
          422: err('validation failed: field messages'),
        },
      },
      get: {
        operationId: 'listTasks',
        summary: "List the caller's tasks, newest first",
        parameters: [
          { name: 'status', in: 'query', required: false, schema: { enum: [...TASK_STATUSES] } },
          {
            name: 'q',
            in: 'query',
            required: false,
            schema: { type: 'string', maxLength: MAX_SEARCH_CHARS },
            description: 'only tasks whose prompt contains this text (case-insensitive; `%` and `_` are literal)',
          },
          {
            name: 'limit',
            in: 'query',
            required: false,
            schema: { type: 'integer', minimum: 1, maximum: MAX_PAGE, default: DEFAULT_PAGE },
          },
          {
            name: 'cursor',
            in: 'query',
            required: false,
            schema: { type: 'string' },
            description: '`next_cursor` of the previous page',
          },
        ],
        responses: {
          200: json(
            {
              type: 'object',
              properties: { data: { type: 'array', items: ref('Task') }, next_cursor: { type: ['string', 'null'] } },
              required: ['data', 'next_cursor'],
            },
            'a page of tasks',
          ),
          ...common,
          422: err('bad status, q, limit or cursor (each named in `errors`)'),
        },
      },
    },
  };
}

/** /api/tasks/{id} and its cancel and events. */
function taskPaths(): Schema {
  const common = commonErrors();
  return {
    '/api/tasks/{id}': {
      get: {
        operationId: 'getTask',
        summary: 'Get a task',
        parameters: [taskIdParam],
        responses: {
          200: json({ type: 'object', properties: { data: ref('Task') }, required: ['data'] }, 'the task'),
          ...common,
          404: err("no such task (or another user's)"),
        },
      },
    },
    '/api/tasks/{id}/cancel': {
      post: {
        operationId: 'cancelTask',
        summary: 'Cancel a task (idempotent)',
        parameters: [taskIdParam],
        responses: {
          200: json(
            { type: 'object', properties: { data: ref('Task') }, required: ['data'] },
            'the task after the cancel',
          ),
          ...common,
          404: err('no such task'),
        },
      },
    },
    '/api/tasks/{id}/events': {
      get: {
        operationId: 'taskEvents',
        summary: "A task's event log in seq order",
        parameters: [
          taskIdParam,
          { name: 'after_seq', in: 'query', required: false, schema: { type: 'integer', minimum: 0 } },
        ],
        responses: {
          200: json(
            { type: 'object', properties: { data: { type: 'array', items: ref('TaskEvent') } }, required: ['data'] },
            'the events',
          ),
          ...common,
          404: err('no such task'),
          422: err('bad after_seq'),
        },
      },
    },
  };
}

/** The models and the session. */
function servicePaths(): Schema {
  return {
    '/api/models': {
      get: {
        operationId: 'listModels',
        summary: "The model registry, with each model's input schema and default flag",
        security: [],
        responses: {
          200: json(
            { type: 'object', properties: { data: { type: 'array', items: ref('Model') } }, required: ['data'] },
            'the models',
          ),
        },
      },
    },
    '/api/session': {
      get: {
        operationId: 'session',
        summary: 'Whether a token is needed, and whom the given one names',
        security: [{ bearer: [] }, {}],
        responses: {
          200: json(
            {
              type: 'object',
              properties: {
                data: {
                  type: 'object',
                  properties: {
                    auth_required: { type: 'boolean' },
                    open_mode: { type: 'boolean' },
                    user_id: { type: ['string', 'null'] },
                    expires_at: {
                      type: ['string', 'null'],
                      format: 'date-time',
                      description: 'when the token given expires (null in open mode); a socket is closed then',
                    },
                  },
                  required: ['auth_required', 'user_id'],
                },
              },
              required: ['data'],
            },
            'the session',
          ),
          401: err('the token given is not good'),
        },
      },
    },
  };
}

/** This document, health, readiness and metrics: no credentials needed. */
function operationsPaths(): Schema {
  return {
    '/api/openapi.json': {
      get: {
        operationId: 'openapi',
        summary: 'This document',
        security: [],
        responses: { 200: { description: 'OpenAPI 3.1', content: { 'application/json': {} } } },
      },
    },
    '/healthz': {
      get: {
        operationId: 'health',
        summary: 'Liveness',
        security: [],
        responses: { 200: json({ type: 'object', properties: { status: { const: 'ok' } } }, 'alive') },
      },
    },
    '/readyz': {
      get: {
        operationId: 'ready',
        summary:
          'Readiness: the database answers and no provider has refused its credentials (each provider is reported by id)',
        security: [],
        responses: { 200: json({ type: 'object' }, 'ready'), 503: err('not ready') },
      },
    },
    '/metrics': {
      get: {
        operationId: 'metrics',
        summary: 'Prometheus metrics',
        security: [],
        responses: {
          200: { description: 'Prometheus text format', content: { 'text/plain': { schema: { type: 'string' } } } },
        },
      },
    },
  };
}

function components(registry: ModelRegistry): Schema {
  const modelSchemas = Object.fromEntries(
    registry.models.map((m) => [
      modelSchemaName(m.name),
      { ...inputData(m, 'named'), title: m.name, description: m.description },
    ]),
  );
  return {
    securitySchemes: {
      bearer: {
        type: 'http',
        scheme: 'bearer',
        bearerFormat: 'pyre1 or JWT',
        description:
          'a token from `pyre token --user NAME`, or a JWT signed HS256 with AUTH_SECRET with `sub` (the user id) ' +
          'and `exp` (not needed in open mode)',
      },
    },
    schemas: {
      CreateTaskRequest: createTaskRequest(registry),
      Task: fromZod(taskSchema),
      TaskEvent: fromZod(
        taskEventSchema,
        "an entry of a task's event log, as the channel pushed it: the payload always has `task_id` and `seq`, then the event's fields",
      ),
      Error: errorBody,
      Model: {
        type: 'object',
        properties: {
          name: { type: 'string' },
          task_type: { enum: [...TASK_TYPES] },
          type: { enum: TASK_KINDS.map((k) => k.kind) },
          output: {
            enum: [...new Set(TASK_KINDS.map((k) => k.output))],
            description:
              'what a task of this model produces: `files` (output.urls) or `text` (output.text, streamed as text_delta)',
          },
          provider: {
            enum: [...new Set(registry.models.map((m) => m.provider))],
            description: 'the provider the model runs on',
          },
          provider_model: { type: 'string' },
          default: { type: 'boolean' },
          description: { type: 'string' },
          streams: { type: 'boolean' },
          input_schema: { type: 'object', description: 'JSON Schema of prompt and parameters' },
        },
        required: ['name', 'task_type', 'type', 'default', 'input_schema'],
      },
      ...modelSchemas,
    },
  };
}

/** The OpenAPI 3.1 document of the REST API, with each model's input schema from the registry. */
export function openApiDocument(registry: ModelRegistry, opts: { serverUrl?: string; version?: string } = {}): Schema {
  return {
    openapi: '3.1.0',
    info: {
      title: 'pyre',
      version: opts.version ?? '0.1.0',
      description:
        'REST API of pyre, a Phoenix-channels-compatible realtime gateway for AI generation tasks. ' +
        'Follow a task live on the channel named by its `topic` (WebSocket `/socket/websocket`, long-poll `/socket/longpoll`).',
    },
    ...(opts.serverUrl ? { servers: [{ url: opts.serverUrl }] } : {}),
    security: [{ bearer: [] }],
    paths: { ...tasksCollectionPaths(), ...taskPaths(), ...servicePaths(), ...operationsPaths() },
    components: components(registry),
  };
}

/** GET /api/openapi.json (built once: the registry does not change while running). */
export function openApiRouter(deps: { registry: ModelRegistry }): Router {
  const r = Router();
  let doc: Schema | undefined;
  r.get('/api/openapi.json', (_req, res) => {
    doc ??= openApiDocument(deps.registry);
    res.json(doc);
  });
  return r;
}
