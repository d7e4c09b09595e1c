import { defineConfig } from 'vitest/config';

// Tests run on Node 20, where every AWS SDK client warns that its 2027 releases need Node 22;
// the warning says nothing about the code under test (the Lambdas run on nodejs24.x).
process.env.AWS_SDK_JS_NODE_VERSION_SUPPORT_WARNING_DISABLED ??= 'true';

// One project per test tier (STYLE.md §11): unit tests make no network calls, integration tests
// run against the real local servers, e2e drives the whole local stack through the CLI.
//
// The tiers run one after another (`groupOrder`). Unit and infra files run two at a time: they
// are short and CPU-bound, and vitest otherwise ran every file of the suite one by one. The
// integration and e2e files run one at a time: each starts its own servers, and several bound
// time (a 2 s worker timeout, a 10 s stall) that two files side by side on a 2-core machine
// would make each other miss.
export default defineConfig({
  test: {
    maxWorkers: 2,
    projects: [
      {
        test: {
          name: 'unit',
          include: ['test/unit/**/*.test.ts'],
          sequence: { groupOrder: 0 },
        },
      },
      {
        // Synthesis and assertions; aws-cdk-lib costs ~1.5 s to load per file, so keep them few.
        test: {
          name: 'infra',
          include: ['test/infra/**/*.test.ts'],
          testTimeout: 60_000,
          sequence: { groupOrder: 0 },
        },
      },
      {
        test: {
          name: 'integration',
          include: ['test/integration/**/*.test.ts'],
          // Each file starts its own servers and some bound job time: on a 2-core machine,
          // files running side by side would measure each other's load.
          maxWorkers: 1,
          testTimeout: 60_000,
          hookTimeout: 60_000,
          sequence: { groupOrder: 1 },
        },
      },
      {
        test: {
          name: 'e2e',
          include: ['test/e2e/**/*.test.ts'],
          maxWorkers: 1,
          testTimeout: 180_000,
          hookTimeout: 120_000,
          sequence: { groupOrder: 2 },
        },
      },
    ],
  },
});
