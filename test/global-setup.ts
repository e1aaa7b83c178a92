// One PostgreSQL server for the whole run: PLEXER_TEST_DATABASE_URL if given, else a private
// cluster in a fresh temp dir. Tests get their own databases on it through helpers/database.ts.
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { TestProject } from 'vitest/node';
import { startPrivateCluster } from '../src/demo/private-cluster.js';

declare module 'vitest' {
  export interface ProvidedContext {
    /** Admin connection URL of the test server; tests create their databases through it. */
    pgUrl: string;
    /** Directory of the private cluster, or null when PLEXER_TEST_DATABASE_URL is used. */
    pgClusterDir: string | null;
  }
}

export default async function setup(project: TestProject): Promise<() => Promise<void>> {
  const external = process.env['PLEXER_TEST_DATABASE_URL'];
  if (external) {
    project.provide('pgUrl', external);
    project.provide('pgClusterDir', null);
    return async () => {};
  }
  const dir = await mkdtemp(join(tmpdir(), 'plexer-test-pg-'));
  const cluster = await startPrivateCluster({ dir });
  project.provide('pgUrl', cluster.url);
  project.provide('pgClusterDir', dir);
  return async () => {
    await cluster.stop();
    await rm(dir, { recursive: true, force: true });
  };
}
