import { readdirSync } from 'node:fs';
import { defineConfig } from 'vitest/config';

/**
 * One Vitest run over every package (unit tests beside the code) and `test/` (multi-process,
 * end-to-end and failure suites). Packages resolve each other's TypeScript sources through the
 * `@meshroute/source` export condition, so unit tests need no build; `test/` spawns the built CLI.
 */
const packages = readdirSync(new URL('./packages', import.meta.url), { withFileTypes: true })
  .filter((d) => d.isDirectory())
  .map((d) => d.name);

const shared = {
  resolve: { conditions: ['@meshroute/source'] },
  ssr: { resolve: { conditions: ['@meshroute/source'], externalConditions: ['@meshroute/source'] } },
};

export default defineConfig({
  test: {
    reporters: process.env.CI ? ['default', 'junit'] : ['default'],
    outputFile: { junit: '.meshroute/test-results/junit.xml' },
    projects: [
      ...packages.map((name) => ({
        ...shared,
        test: {
          name: `@meshroute/${name}`,
          root: `packages/${name}`,
          include: ['src/**/*.test.ts', 'test/**/*.test.ts'],
          testTimeout: 30_000,
          hookTimeout: 60_000,
        },
      })),
      {
        ...shared,
        test: {
          name: 'integration',
          root: 'test',
          include: ['**/*.test.ts'],
          testTimeout: 120_000,
          hookTimeout: 120_000,
          fileParallelism: false,
        },
      },
    ],
  },
});
