// One PostgreSQL server for the whole run: PLEXER_TEST_DATABASE_URL if given, else a private
// cluster in a fresh temp dir. Tests get their own databases on it through helpers/database.ts.
// The store and apache levels both name this file (vitest.config.ts) and vitest runs it once per level, in
// the same process (each with its own copy of this module): the first level starts the server, the other
// shares it, and the last teardown stops it.
// The unit level does not name it, so `npm run test:unit` starts no PostgreSQL.
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

interface TestServer {
  url: string;
  clusterDir: string | null;
  /** Levels that have set up and not yet torn down. */
  users: number;
  stop: () => Promise<void>;
}

// On globalThis, not in this module: each level loads its own copy of the module.
const shared = globalThis as typeof globalThis & { plexerTestServer?: Promise<TestServer> };

async function startServer(): Promise<TestServer> {
  const external = process.env['PLEXER_TEST_DATABASE_URL'];
  if (external) return { url: external, clusterDir: null, users: 0, stop: async () => {} };
  const dir = await mkdtemp(join(tmpdir(), 'plexer-test-pg-'));
  const cluster = await startPrivateCluster({ dir });
  return {
    url: cluster.url,
    clusterDir: dir,
    users: 0,
    stop: async () => {
      await cluster.stop();
      await rm(dir, { recursive: true, force: true });
    },
  };
}

export default async function setup(project: TestProject): Promise<() => Promise<void>> {
  shared.plexerTestServer ??= startServer();
  const server = await shared.plexerTestServer;
  server.users++;
  project.provide('pgUrl', server.url);
  project.provide('pgClusterDir', server.clusterDir);
  return async () => {
    if (--server.users > 0) return;
    delete shared.plexerTestServer;
    await server.stop();
  };
}
