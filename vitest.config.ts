import { readdirSync } from 'node:fs';
import { defineConfig } from 'vitest/config';

// Three levels, one directory each (test/README.md): unit needs nothing but npm's packages; store and apache run
// against one PostgreSQL that test/global-setup.ts starts once for both. `vitest run` runs all three;
// `--project unit` (npm run test:unit) starts no PostgreSQL.
const LEVELS = ['unit', 'store', 'apache'] as const;
const NEEDS_POSTGRES = new Set<string>(['store', 'apache']);

// A test file left directly in test/ would belong to no level and never run.
const stray = readdirSync(new URL('./test/', import.meta.url)).filter((name) => name.endsWith('.test.ts'));
if (stray.length > 0) throw new Error(`test files outside test/{${LEVELS.join(',')}}/ would never run: ${stray.join(', ')}`);

export default defineConfig({
  test: {
    // Forks, not threads: tests spawn helpers and Apache, and a crashed child must not take a shared worker down.
    pool: 'forks',
    fileParallelism: true,
    maxWorkers: 2,
    testTimeout: 30_000,
    hookTimeout: 60_000,
    projects: LEVELS.map((level) => ({
      extends: true,
      test: {
        name: level,
        include: [`test/${level}/**/*.test.ts`],
        globalSetup: NEEDS_POSTGRES.has(level) ? ['test/global-setup.ts'] : [],
      },
    })),
  },
});
