// Runs the slowest suites first, so that no long suite starts last while the other worker idles.
// Jest does this itself from its cache of the last run's times; a first run (CI, a fresh clone)
// has no cache, and jest would then start the largest files first, which are not the slowest.
// Suites without a time of their own, cached or below, are taken for short ones.
const path = require('node:path');
const Sequencer = require('@jest/test-sequencer').default;

/** Seconds each slow suite took on an idle 2-core machine (PGlite half, Chromium and HAProxy installed). */
const ESTIMATE_S = {
  'dashboard/dashboard.test.ts': 63,
  'cli/cli.test.ts': 32,
  // after cli: the two browser suites are better not started together
  'dashboard/edges.test.ts': 30,
  'api/persistence.test.ts': 24,
  'ops/shutdown.test.ts': 23,
  'runner/scale.test.ts': 22,
  'cli/task-commands.test.ts': 21,
  'runner/crash.test.ts': 20,
  'runner/give-up.test.ts': 15,
  'api/limits-and-logs.test.ts': 15,
  'runner/text-deltas.test.ts': 14,
  'runner/models.test.ts': 13,
  'api/retention.test.ts': 13,
  'api/connections.test.ts': 13,
};
const SHORT_MS = 1000;

class SlowestFirst extends Sequencer {
  time(test) {
    const cached = super.time(test);
    if (cached != null) return cached;
    const rel = path.relative(path.join(test.context.config.rootDir, 'tests'), test.path).split(path.sep).join('/');
    return ESTIMATE_S[rel] != null ? ESTIMATE_S[rel] * 1000 : SHORT_MS;
  }
}

module.exports = SlowestFirst;
