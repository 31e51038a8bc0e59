// Runs the slowest suites first, so that no long suite starts last while the other worker idles.
// Jest does this itself from its cache of the last run's times; a first run (CI, a fresh clone)
// has no cache, and jest would then start the largest files first, which are not the slowest.
// Suites without a time of their own, cached or below, are taken for short ones.
const path = require('node:path');
const Sequencer = require('@jest/test-sequencer').default;

/** Seconds each slow suite took on an idle 2-core machine (PGlite half, 4 workers, Chromium and HAProxy installed). */
const ESTIMATE_S = {
  'dashboard/dashboard.test.ts': 63,
  'runner/scale.test.ts': 33,
  'dashboard/edges.test.ts': 31,
  'runner/models.test.ts': 26,
  'runner/faults.test.ts': 21,
  'api/persistence.test.ts': 19,
  'cli/cli.test.ts': 19,
  'runner/crash.test.ts': 16,
  'ops/start-mistakes.test.ts': 15,
  'api/fuzz-input.test.ts': 14,
  'ops/shutdown.test.ts': 13,
  'channels/task-channel.test.ts': 13,
  'cli/task-commands.test.ts': 12,
  'providers/openai-config.test.ts': 12,
  'runner/openai.test.ts': 12,
  'channels/swift-client.test.ts': 11,
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
