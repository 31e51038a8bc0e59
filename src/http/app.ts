import express, { type Express } from 'express';
import type { Authenticator } from '../auth/tokens';
import type { Db } from '../db';
import type { Logger } from '../log';
import type { TaskService } from '../tasks/service';
import { errorHandler, notFoundRoute, sendError } from './errors';
import type { IdempotencyKeys } from './idempotency';
import { methodNotAllowed, requestContext } from './middleware';
import { tasksRouter } from './tasks-routes';

export interface HttpDeps {
  db: Db;
  tasks: TaskService;
  auth: Authenticator;
  idempotency: IdempotencyKeys;
  logger: Logger;
  /** Task submissions a user may make a minute (0: no limit). */
  tasksPerMinute?: number;
  /** Extra routers mounted before the API's 404 (webhooks, files, metrics, dashboard). */
  mount?: (app: Express) => void;
}

/** The Express app: REST API, health, and whatever the composition root mounts. */
export function createHttpApp(deps: HttpDeps): Express {
  const app = express();
  app.disable('x-powered-by');
  app.set('etag', false);
  app.set('query parser', 'simple');
  app.use(requestContext(deps.logger));

  app.get('/healthz', (_req, res) => {
    res.json({ status: 'ok' });
  });
  app.get('/readyz', async (_req, res) => {
    try {
      await Promise.race([
        deps.db.raw('select 1'),
        new Promise((_, reject) =>
          setTimeout(() => reject(new Error('database did not answer within 2 s')), 2000).unref(),
        ),
      ]);
      res.json({ status: 'ok', database: 'ok' });
    } catch (err) {
      sendError(res, 503, `not ready: database unreachable (${(err as Error).message})`);
    }
  });

  app.get('/api/models', (_req, res) => {
    res.json({ data: deps.tasks.registry.describe() });
  });
  app.all('/api/models', methodNotAllowed('GET, HEAD'));
  // The task routes first: they are the hot path, and they only take `/api/tasks...`.
  app.use('/api', tasksRouter(deps));
  deps.mount?.(app);
  app.use('/api', notFoundRoute);
  app.use(errorHandler);
  return app;
}
