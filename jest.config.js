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
  testTimeout: 60000,
  // Slowest suites first, also on a first run with no timing cache (CI).
  testSequencer: '<rootDir>/tests/helpers/sequencer.cjs',
  // The PGlite half's suites wait on sockets, timers and child processes more than they compute: on
  // a 2-core machine 4 workers ran it in 189 s of jest time against 289 s with 2 (and 219 s with 6).
  // With PostgreSQL the multi-process suites join in (three gateways behind HAProxy, two runners
  // with 2 s leases): four of them at once starved a runner past its lease, so 2 workers there.
  maxWorkers: process.env.PYRE_TEST_DATABASE_URL ? 2 : 4,
};
