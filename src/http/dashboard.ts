import fs from 'node:fs';
import path from 'node:path';
import express, { Router } from 'express';
import { TokenError, type Authenticator } from '../auth/tokens';
import { eventNames } from '../tasks/events';

/** The dashboard's static files: public/ at the package root (src/http/ in a checkout, dist/src/http/ compiled). */
export const PUBLIC_DIR = packageRootPublic();

function packageRootPublic(): string {
  let dir = __dirname;
  while (!fs.existsSync(path.join(dir, 'package.json')) && path.dirname(dir) !== dir) dir = path.dirname(dir);
  return path.join(dir, 'public');
}

/** The official phoenix client's browser builds, served to the dashboard as /vendor/phoenix.*. */
function phoenixStaticDir(): string {
  // phoenix's "exports" hide package.json; its CommonJS entry sits beside the browser builds.
  return path.dirname(require.resolve('phoenix'));
}

/** `/js/events.js`: the event names of src/tasks/events.ts as an ES module. */
export function dashboardEventsModule(): string {
  const names = eventNames();
  return [
    '// Served by the pyre gateway from its task-event contract (src/tasks/events.ts).',
    `export const TASK_EVENTS = ${JSON.stringify(names.task_events)};`,
    `export const RESPONSE_EVENTS = ${JSON.stringify(names.response_events)};`,
    `export const GENERATE_EVENTS = ${JSON.stringify(names.generate_events)};`,
    `export const TASK_KINDS = ${JSON.stringify(names.kinds)};`,
    '',
  ].join('\n');
}

/**
 * The dashboard: static files at `/`, the phoenix client at `/vendor/`, and
 * `GET /api/session`, which tells a page whether it needs a token and who a token names.
 */
export function dashboardRouter(deps: { auth: Authenticator }): Router {
  const r = Router();

  r.get('/api/session', async (req, res) => {
    const header = req.get('authorization');
    const m = header ? /^Bearer\s+(\S+)\s*$/i.exec(header) : null;
    const authRequired = !deps.auth.openMode;
    if (header && !m) throw new TokenError('malformed');
    if (authRequired && !m) {
      res.json({ data: { auth_required: true, open_mode: false, user_id: null } });
      return;
    }
    // A bad or expired token answers 401, so a page can ask for another one.
    const { userId, expiresAt } = await deps.auth.identify(m?.[1]);
    res.json({
      data: {
        auth_required: authRequired,
        open_mode: !authRequired,
        user_id: userId,
        expires_at: expiresAt === null ? null : new Date(expiresAt).toISOString(),
      },
    });
  });

  // The task events' names, as a module the dashboard imports: generated from the contract, not a copy.
  const eventsModule = dashboardEventsModule();
  r.get('/js/events.js', (_req, res) => {
    res.type('text/javascript').setHeader('Cache-Control', 'no-cache');
    res.send(eventsModule);
  });

  const vendor = ['phoenix.mjs', 'phoenix.mjs.map', 'phoenix.js', 'phoenix.min.js'];
  r.get('/vendor/:file', (req, res, next) => {
    const file = req.params.file;
    if (!vendor.includes(file)) return next();
    res.setHeader('Cache-Control', 'public, max-age=3600');
    res.sendFile(path.join(phoenixStaticDir(), file));
  });

  r.use(
    express.static(PUBLIC_DIR, {
      index: 'index.html',
      dotfiles: 'ignore',
      fallthrough: true,
      setHeaders: (res) => res.setHeader('Cache-Control', 'no-cache'),
    }),
  );
  return r;
}
