// Regression tests from an attack review: a tenant's code that shares the prg: map's uid.
//
// The maps run as www-data:www-data (mapUser). So do Apache's workers and every daemon group without
// --run-as. Reopening /proc/MAP/fd/1 fails (the pipe inode is root's, 0600). Such code can SIGSTOP the map,
// which would leave every mapped request of the server waiting under the rewrite-map lock: the watchdog kills a
// map that keeps a worker waiting 2 s without writing (PLX0903) and Apache is reloaded with fresh maps.
// A tenant under its own --run-as uid can do neither.
import { spawnSync } from 'node:child_process';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { mapProcesses } from '../helpers/apache-procs.js';
import { seedTwoTenants, startTestFront, type TestFront, waitUntilServed, whoamiWithin } from '../helpers/front.js';
import { waitFor } from '../helpers/wait.js';

const WWW_DATA = 33; // a daemon group without --run-as runs as this uid
const OTHER_UID = 65534; // stands for a tenant under its own --run-as account

let t: TestFront;

beforeAll(async () => {
  t = await startTestFront(seedTwoTenants);
  await waitUntilServed(t, 'alice', 'alice-pw');
  await waitUntilServed(t, 'bob', 'bob-pw');
}, 120_000);

afterAll(() => t?.close());

function asUid(uid: number, script: string) {
  return spawnSync('setpriv', [`--reuid=${uid}`, `--regid=${uid}`, '--clear-groups', '/bin/sh', '-c', script], {
    encoding: 'utf8',
    timeout: 5_000,
  });
}

const get = (user: string, timeoutMs: number) => whoamiWithin(t, user, timeoutMs);

describe("the map's pipes and signals from a tenant's uid", () => {
  it('a tenant under its own uid can neither write into the answer pipe nor signal the map', () => {
    const [map] = mapProcesses(t.front.httpd.pid, 'route');
    const write = asUid(OTHER_UID, `printf '#bob=tenant1\\n' > /proc/${map}/fd/1`);
    expect(write.status, write.stderr).not.toBe(0);
    const signal = asUid(OTHER_UID, `kill -STOP ${map}`);
    expect(signal.status, signal.stderr).not.toBe(0);
  });

  it('a daemon without --run-as (www-data, like the map) cannot forge an answer that routes bob into its group', async () => {
    const [map] = mapProcesses(t.front.httpd.pid, 'route');
    const write = asUid(WWW_DATA, `printf '#bob=tenant1\\n' > /proc/${map}/fd/1`);
    console.log(`write into /proc/${map}/fd/1 as www-data: exit ${write.status} ${write.stderr.trim()}`);
    expect(write.status, "the answer pipe is root's, 0600").not.toBe(0);
    const bob = await get('bob', 5_000);
    console.log(`bob after the forged line: ${JSON.stringify(bob)}`);
    await waitFor(
      async () => (await get('alice', 3_000)).group === 'tenant1' && (await get('bob', 3_000)).group === 'tenant2',
      10_000,
      'routing healed',
    );
    expect(bob.group, "bob served by tenant1 (alice's group) from a forged map answer").not.toBe('tenant1');
  }, 30_000);

  // ptrace of the map as www-data (a group without --run-as is Apache itself) is a documented limit: apache/SECURITY.md, "Threat model".

  it('a daemon without --run-as that stops the map (SIGSTOP) stalls no request: the watchdog kills the map', async () => {
    const [map] = mapProcesses(t.front.httpd.pid, 'route');
    const signal = asUid(WWW_DATA, `kill -STOP ${map}`);
    console.log(`kill -STOP ${map} as www-data: exit ${signal.status} ${signal.stderr.trim()}`);
    let results: Array<{ status: number | 'timeout'; group?: string }> = [];
    try {
      // 6 s: past the watchdog's 2 s limit for a map that keeps a worker waiting.
      results = await Promise.all([get('alice', 6_000), get('bob', 6_000)]);
    } finally {
      try {
        process.kill(map!, 'SIGCONT');
      } catch {
        /* killed by the watchdog */
      }
    }
    console.log(`with the map stopped: ${JSON.stringify(results)}`);
    // The stopped map kept a worker waiting: the watchdog killed it, the waiting requests got our 503.
    expect(t.front.httpd.errorLog()).toMatch(/PLX0903/);
    expect(mapProcesses(t.front.httpd.pid, 'route')).not.toContain(map);
    expect(results.map((r) => r.status)).not.toContain('timeout');
    for (const [i, r] of results.entries()) if (r.status === 200) expect(r.group).toBe(i === 0 ? 'tenant1' : 'tenant2');
    await waitFor(
      async () => (await get('alice', 3_000)).group === 'tenant1' && (await get('bob', 3_000)).group === 'tenant2',
      15_000,
      'served again by fresh maps',
    );
  }, 30_000);
});
