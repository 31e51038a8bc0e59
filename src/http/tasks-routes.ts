import type { IncomingMessage } from 'node:http';
import express, { Router, type RequestHandler } from 'express';
import { nestedDeeperThan } from '../realtime';
import { withAbsoluteUrls } from '../storage/urls';
import type { TaskService } from '../tasks/service';
import { ValidationError } from '../tasks/errors';
import { parseListQuery } from '../tasks/list-query';
import { bodyHash, isValidKey, type IdempotencyKeys } from './idempotency';
import { methodNotAllowed, requireJson, requireUser } from './middleware';
import type { Authenticator } from '../auth/tokens';
import { RequestRefused, sendError } from './errors';
import { LateTake } from './rate-limit';
import type { TaskCreationLimit } from '../db/rate-limit';

export const MAX_BODY_BYTES = 1024 * 1024;
/**
 * The deepest nesting of objects and arrays a request body may have. A task body needs 3
 * (`{"input_data":{"images":["…"]}}`); 32 leaves room for a client's own top-level bookkeeping.
 */
export const MAX_BODY_DEPTH = 32;

/**
 * 400 for a body nested deeper than MAX_BODY_DEPTH, before anything reads it: code that walks a
 * value recursively (the idempotency hash, JSON.stringify) would overflow its stack on it. 400, like
 * malformed JSON, because the body as a whole is refused before any field is looked at.
 */
const limitBodyDepth: RequestHandler = (req, _res, next) => {
  if (nestedDeeperThan(req.body, MAX_BODY_DEPTH)) {
    return next(new RequestRefused(400, `request body is nested more than ${MAX_BODY_DEPTH} levels deep`));
  }
  next();
};

/**
 * The body of POST /api/tasks: `input_data`, and a top-level `model` the old backend also took.
 * Other top-level keys are ignored, as the Phoenix controller ignored them (a client may send its
 * own bookkeeping); task parameters are read from `input_data` only.
 */
function inputFromBody(body: unknown): unknown {
  if (typeof body !== 'object' || body === null || Array.isArray(body)) {
    throw new ValidationError({ body: ['must be a JSON object'] });
  }
  const b = body as Record<string, unknown>;
  if (b.input_data === undefined || b.input_data === null) {
    throw new ValidationError({ input_data: ["can't be blank"] });
  }
  if (typeof b.input_data !== 'object' || Array.isArray(b.input_data)) {
    throw new ValidationError({ input_data: ['must be a JSON object'] });
  }
  const input = { ...(b.input_data as Record<string, unknown>) };
  if (b.model !== undefined) {
    if (input.model !== undefined && input.model !== b.model) {
      throw new ValidationError({ model: ['is given twice with different values (top level and input_data)'] });
    }
    input.model = b.model;
  }
  return input;
}

export interface TasksRouterDeps {
  tasks: TaskService;
  auth: Authenticator;
  idempotency: IdempotencyKeys;
  /** The per-user task-creation limit (shared with the channels); absent: none. */
  taskLimit?: TaskCreationLimit;
  baseUrlOf?: (req: IncomingMessage) => string;
}

/** Stored output URLs are relative (`/files/…`); every answer makes them absolute for its caller. */
type Absolute = <T>(req: IncomingMessage, value: T) => T;

/** REST for tasks, per the contract. Every route under `/tasks` needs a user; other paths pass through. */
export function tasksRouter(deps: TasksRouterDeps): Router {
  const { tasks } = deps;
  const absolute: Absolute = (req, value) => (deps.baseUrlOf ? withAbsoluteUrls(value, deps.baseUrlOf(req)) : value);
  const r = Router();
  r.use('/tasks', requireUser(deps.auth));

  // The per-user limit is taken in the task insert's statement; a request refused before it
  // still spends a token (LateTake), as if the limit had been checked first.
  const late = new LateTake(deps.taskLimit);
  r.post(
    '/tasks',
    late.owe,
    requireJson,
    express.json({ limit: MAX_BODY_BYTES, strict: false }),
    limitBodyDepth,
    createTask(deps, late),
    late.settle,
  );
  r.get('/tasks', listTasks(tasks, absolute));
  r.get('/tasks/:id', async (req, res) => {
    res.json({ data: absolute(req, await tasks.get(req.userId, req.params.id!)) });
  });
  r.post('/tasks/:id/cancel', async (req, res) => {
    res.json({ data: absolute(req, await tasks.cancel(req.userId, req.params.id!)) });
  });
  r.get('/tasks/:id/events', async (req, res) => {
    const after = req.query.after_seq;
    if (after !== undefined && (typeof after !== 'string' || !/^\d{1,9}$/.test(after))) {
      throw new ValidationError({ after_seq: ['must be a non-negative integer'] });
    }
    const events = await tasks.events(req.userId, req.params.id!, after ? Number(after) : 0);
    res.json({ data: events.map(({ user_id: _u, ...e }) => ({ ...e, payload: absolute(req, e.payload) })) });
  });

  r.all('/tasks', methodNotAllowed('GET, HEAD, POST'));
  r.all('/tasks/:id', methodNotAllowed('GET, HEAD'));
  r.all('/tasks/:id/cancel', methodNotAllowed('POST'));
  r.all('/tasks/:id/events', methodNotAllowed('GET, HEAD'));

  return r;
}

/** POST /api/tasks: 202 with the task; with an Idempotency-Key, the first answer for the same key and body. */
function createTask({ tasks, idempotency }: TasksRouterDeps, late: LateTake): RequestHandler {
  const limit = late.enabled ? late.limit : undefined;
  return async (req, res) => {
    const key = req.get('idempotency-key');
    // With a key the task is written in a transaction of its own: the token is taken first.
    if (key !== undefined) await late.takeNow(req);
    const input = inputFromBody(req.body);
    if (key === undefined) {
      const task = await tasks.create(req.userId, input, { limit });
      res.setHeader('Location', `/api/tasks/${task.id}`);
      res.status(202).json({ task_id: task.id, data: task });
      return;
    }
    if (!isValidKey(key)) {
      res.status(400).json({ errors: { 'Idempotency-Key': ['must be 1 to 255 visible ASCII characters'] } });
      return;
    }
    const outcome = await idempotency.begin(req.userId, key, bodyHash(req.body));
    if (outcome.kind === 'conflict') return sendError(res, 409, outcome.reason);
    if (outcome.kind === 'replay') {
      res.setHeader('Idempotent-Replayed', 'true');
      const replayed = (outcome.body as { task_id?: unknown } | null)?.task_id;
      if (outcome.status === 202 && typeof replayed === 'string') res.setHeader('Location', `/api/tasks/${replayed}`);
      res.status(outcome.status).json(outcome.body);
      return;
    }
    try {
      let answer: unknown;
      const task = await tasks.create(req.userId, input, {
        inTransaction: async (trx, t) => {
          answer = { task_id: t.id, data: t };
          await idempotency.complete(trx, req.userId, key, 202, answer);
        },
      });
      res.setHeader('Location', `/api/tasks/${task.id}`);
      res.status(202).json(answer ?? { task_id: task.id, data: task });
    } catch (err) {
      await idempotency.abandon(req.userId, key);
      throw err;
    }
  };
}

/** GET /api/tasks?status=&q=&limit=&cursor=: a page of the caller's tasks. */
function listTasks(tasks: TaskService, absolute: Absolute): RequestHandler {
  return async (req, res) => {
    const page = await tasks.list(req.userId, parseListQuery(req.query));
    res.json({ ...page, data: page.data.map((t) => absolute(req, t)) });
  };
}
