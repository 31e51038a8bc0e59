#!/usr/bin/env node
'use strict';
// The `pyre` command. In a checkout (sources and tsx present) it runs the TypeScript sources,
// so it never runs a stale build; an install without them (the Docker image) runs dist/.
const path = require('node:path');
const fs = require('node:fs');
const source = path.join(__dirname, '..', 'src', 'cli', 'main.ts');
const compiled = path.join(__dirname, '..', 'dist', 'src', 'cli', 'main.js');

function hasTsx() {
  try {
    require.resolve('tsx/cjs');
    return true;
  } catch {
    return false;
  }
}

let cli;
if (fs.existsSync(source) && hasTsx()) {
  require('tsx/cjs');
  cli = require(source);
} else {
  cli = require(compiled);
}
cli
  .buildCli()
  .parseAsync(process.argv)
  .catch((err) => {
    process.stderr.write(`pyre: ${err && err.message ? err.message : String(err)}\n`);
    process.exit(1);
  });
