import fs from 'node:fs';
import path from 'node:path';
import { TEMPLATE_ENV } from './global-setup';

/** Removes the run's PGlite template (jest `globalTeardown`). */
export default async function globalTeardown(): Promise<void> {
  const file = process.env[TEMPLATE_ENV];
  if (file) fs.rmSync(path.dirname(file), { recursive: true, force: true });
}
