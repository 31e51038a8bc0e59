import fs from 'node:fs';
import path from 'node:path';
import express, { Router } from 'express';
import { TokenError, type Authenticator } from '../auth/tokens';

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

/**
 * The dashboard: static files at `/`, the phoenix client at `/vendor/`, and
 * `GET /api/session`, which tells a page whether it needs a token and who a token names.
 */
export function dashboardRouter(deps: { auth: Authenticator }): Router {
  const r = Router();

  r.get('/api/session', (req, res) => {
    const header = req.get('authorization');
    const m = header ? /^Bearer\s+(\S+)\s*$/i.exec(header) : null;
    const authRequired = !deps.auth.openMode;
    if (header && !m) throw new TokenError('malformed');
    if (authRequired && !m) {
      res.json({ data: { auth_required: true, open_mode: false, user_id: null } });
      return;
    }
    // A bad or expired token answers 401, so a page can ask for another one.
    const userId = deps.auth.userFor(m?.[1]);
    res.json({ data: { auth_required: authRequired, open_mode: !authRequired, user_id: userId } });
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
