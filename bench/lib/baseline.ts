/**
 * Another commit of pyre to run a gateway scenario against, in the same run as the working tree
 * (`--baseline=<commit>`), so that a regression shows as a ratio measured under one machine load.
 *
 * The commit's tree is written out with `git archive` into `<tmpdir>/pyre-bench-baseline-<sha12>`
 * (a plain copy: no `git worktree` entry is added to the repository), and kept there for the next
 * run. Its dependencies: a link to this tree's `node_modules` when both lockfiles are identical,
 * else `npm ci --prefer-offline` in the copy (a minute or two, once). With PYRE_BENCH_BUILT=1 the
 * copy is also built (`npm run build`), as the working tree must be.
 */
import { execFileSync } from 'node:child_process';
import { existsSync, mkdirSync, readFileSync, rmSync, symlinkSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { BENCH_DIR, log } from './harness';

/** The working tree's root (the directory that holds bench/). */
export const REPO_ROOT = join(BENCH_DIR, '..');

export interface Baseline {
  /** The full commit hash. */
  sha: string;
  /** Its first 7 characters, for tables. */
  short: string;
  /** The directory holding the commit's tree, ready to run `src/main.ts` from. */
  root: string;
}

function run(cmd: string, args: string[], cwd: string): string {
  return execFileSync(cmd, args, { cwd, encoding: 'utf8', stdio: ['ignore', 'pipe', 'inherit'] });
}

/** Resolves `commit` (any name git knows: a hash, a branch, `HEAD~3`) and prepares its tree. */
export function prepareBaseline(commit: string): Baseline {
  let sha: string;
  try {
    sha = run('git', ['rev-parse', '--verify', '--quiet', `${commit}^{commit}`], REPO_ROOT).trim();
  } catch {
    throw new Error(`--baseline=${commit}: git knows no such commit in ${REPO_ROOT}`);
  }
  const root = join(tmpdir(), `pyre-bench-baseline-${sha.slice(0, 12)}`);
  const built = process.env.PYRE_BENCH_BUILT === '1';
  const marker = join(root, built ? '.bench-ready-built' : '.bench-ready');
  if (existsSync(marker)) {
    log(`baseline ${sha.slice(0, 7)}: reusing ${root}`);
    return { sha, short: sha.slice(0, 7), root };
  }
  if (!existsSync(join(root, '.bench-ready'))) {
    rmSync(root, { recursive: true, force: true });
    mkdirSync(root, { recursive: true });
    log(`baseline ${sha.slice(0, 7)}: writing its tree to ${root}`);
    const tar = join(root, '.tree.tar');
    run('git', ['archive', '--format=tar', '-o', tar, sha], REPO_ROOT);
    run('tar', ['-xf', tar], root);
    rmSync(tar);
    const sameLock =
      existsSync(join(root, 'package-lock.json')) &&
      readFileSync(join(root, 'package-lock.json'), 'utf8') ===
        readFileSync(join(REPO_ROOT, 'package-lock.json'), 'utf8');
    if (sameLock) {
      log(`baseline ${sha.slice(0, 7)}: same package-lock.json, linking node_modules`);
      symlinkSync(join(REPO_ROOT, 'node_modules'), join(root, 'node_modules'), 'dir');
    } else {
      log(`baseline ${sha.slice(0, 7)}: its package-lock.json differs, npm ci (once)`);
      run('npm', ['ci', '--prefer-offline', '--no-audit', '--no-fund', '--loglevel=error'], root);
    }
    writeFileSync(join(root, '.bench-ready'), `${sha}\n`);
  }
  if (built) {
    log(`baseline ${sha.slice(0, 7)}: npm run build`);
    run('npm', ['run', '--silent', 'build'], root);
    writeFileSync(marker, `${sha}\n`);
  }
  return { sha, short: sha.slice(0, 7), root };
}
