// Stop and restart the shared test server, for outage tests. Every test file running at the same
// time loses its database too: keep such tests in a file whose other tests tolerate it.
import { inject } from 'vitest';
import { openPrivateCluster, type PrivateCluster } from '../../src/demo/private-cluster.js';

export async function stopTestCluster(): Promise<void> {
  await (await testCluster()).stop();
}

export async function startTestCluster(): Promise<void> {
  await (await testCluster()).start();
}

/** True when the suite runs its own cluster, i.e. outage tests can run. */
export function canControlTestCluster(): boolean {
  return inject('pgClusterDir') !== null;
}

async function testCluster(): Promise<PrivateCluster> {
  const dir = inject('pgClusterDir');
  if (dir === null) {
    throw new Error(
      'the test server comes from PLEXER_TEST_DATABASE_URL and cannot be stopped by the tests; ' +
        'guard outage tests with canControlTestCluster()',
    );
  }
  return openPrivateCluster(dir);
}
