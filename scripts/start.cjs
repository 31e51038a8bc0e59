#!/usr/bin/env node
'use strict';
// `npm start`: compiles the TypeScript only when a source is newer than the build (a fresh clone,
// or after an edit), then starts the gateway from dist/. A start on a built tree, and so every
// configuration error, answers at once instead of after a full `tsc`.
const { spawnSync } = require('node:child_process');
const fs = require('node:fs');
const path = require('node:path');

const ROOT = path.join(__dirname, '..');
/** What `npm run build` compiles or copies (tsconfig.build.json's include, the configs, the stand-in's assets). */
const SOURCES = ['src', 'migrations', 'knexfile.ts', 'tsconfig.json', 'tsconfig.build.json', 'package.json'];
const BUILT = path.join('dist', 'src', 'main.js');

/** The newest modification time under `p` (a file or a directory), or 0 if it is missing. */
function newest(p) {
  let st;
  try {
    st = fs.statSync(p);
  } catch {
    return 0;
  }
  if (!st.isDirectory()) return st.mtimeMs;
  let max = st.mtimeMs; // a deleted or renamed file changes its directory
  for (const name of fs.readdirSync(p)) max = Math.max(max, newest(path.join(p, name)));
  return max;
}

/** Whether the tree at `root` needs `npm run build`: no build yet, or a source newer than it. */
function needsBuild(root = ROOT) {
  const built = newest(path.join(root, BUILT));
  if (built === 0) return true;
  return SOURCES.some((s) => newest(path.join(root, s)) > built);
}

module.exports = { needsBuild };

if (require.main === module) {
  if (needsBuild()) {
    process.stderr.write('pyre: building (sources changed since the last build)…\n');
    const npm = process.platform === 'win32' ? 'npm.cmd' : 'npm';
    const r = spawnSync(npm, ['run', 'build', '--silent'], { cwd: ROOT, stdio: 'inherit' });
    if (r.status !== 0) process.exit(r.status ?? 1);
  }
  require(path.join(ROOT, BUILT))
    .main()
    .catch((err) => {
      process.stderr.write(`pyre: failed to start: ${err instanceof Error ? err.stack : String(err)}\n`);
      process.exit(1);
    });
}
