#!/usr/bin/env node
'use strict';
// The `pyre` command: runs the compiled CLI, or the TypeScript sources through tsx in a checkout.
const path = require('node:path');
const fs = require('node:fs');
const compiled = path.join(__dirname, '..', 'dist', 'src', 'cli', 'main.js');
let cli;
if (fs.existsSync(compiled)) {
  cli = require(compiled);
} else {
  require('tsx/cjs');
  cli = require('../src/cli/main.ts');
}
cli.buildCli().parseAsync(process.argv).catch((err) => {
  process.stderr.write(`pyre: ${err && err.message ? err.message : String(err)}\n`);
  process.exit(1);
});
