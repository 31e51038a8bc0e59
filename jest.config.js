/** @type {import('jest').Config} */
module.exports = {
  testEnvironment: 'node',
  roots: ['<rootDir>/tests'],
  testMatch: ['**/*.test.ts'],
  transform: {
    '^.+\\.(t|j|mj)s$': [
      '@swc/jest',
      { jsc: { target: 'es2022', parser: { syntax: 'typescript' } }, module: { type: 'commonjs' } },
    ],
  },
  // Says whether the PostgreSQL half runs (and prepares what every suite shares).
  globalSetup: '<rootDir>/tests/helpers/global-setup.ts',
  globalTeardown: '<rootDir>/tests/helpers/global-teardown.ts',
  testTimeout: 60000,
  // Slowest suites first, also on a first run with no timing cache (CI).
  testSequencer: '<rootDir>/tests/helpers/sequencer.cjs',
  // Most suites wait on sockets, timers and child processes more than they compute: on this 2-core
  // machine 4 workers ran the PGlite half in 189 s of jest time against 289 s with 2 (and 219 s with 6).
  maxWorkers: 4,
};
