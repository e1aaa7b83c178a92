// ATTACK: a tenant's code that shares the prg: map's uid.
//
// The maps run as www-data:www-data (mapUser). So do Apache's workers and every daemon group without
// --run-as. Reopening /proc/MAP/fd/1 fails (the pipe inode is root's, 0600: checked below, held), but with
// the same uid and no Yama a process can ptrace the map and make it write a line of its own: "bob=tenant1"
// names bob's key, passes the key check, and bob's next request is served by tenant1's daemon (the attacker's
// code then sees bob's requests: cookies, POST bodies). It can also SIGSTOP the map: every mapped request of
// the server then waits under the rewrite-map lock, and the watchdog, which counts a stopped map as alive,
// never reloads (or SIGKILL it again and again: 503 for everyone, the watchdog backing off up to 60 s).
//
// A tenant under its own --run-as uid can do neither (checked here as well, so the fix — maps under a uid that
// no worker or daemon shares — has a regression test).
import { spawnSync } from 'node:child_process';
import http from 'node:http';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { mapProcesses } from './helpers/apache-procs.js';
import { seedTwoTenants, startTestFront, waitUntilServed, type TestFront } from './helpers/front.js';
import { waitFor } from './helpers/wait.js';

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
  return spawnSync('setpriv', [`--reuid=${uid}`, `--regid=${uid}`, '--clear-groups', '/bin/sh', '-c', script], { encoding: 'utf8', timeout: 5_000 });
}

function get(user: string, timeoutMs: number): Promise<{ status: number | 'timeout'; group?: string }> {
  return new Promise((resolve) => {
    const auth = Buffer.from(`${user}:${user}-pw`).toString('base64');
    const request = http.get(`${t.front.httpd.url}/app/whoami`, { headers: { authorization: `Basic ${auth}` }, agent: false }, (response) => {
      let body = '';
      response.setEncoding('utf8');
      response.on('data', (chunk: string) => (body += chunk));
      response.on('end', () => {
        const status = response.statusCode ?? 0;
        resolve({ status, group: status === 200 ? (JSON.parse(body) as { group: string }).group : undefined });
      });
    });
    request.setTimeout(timeoutMs, () => {
      request.destroy();
      resolve({ status: 'timeout' });
    });
    request.on('error', () => resolve({ status: 'timeout' }));
  });
}

describe("the map's pipes and signals from a tenant's uid", () => {
  it('a tenant under its own uid can neither write into the answer pipe nor signal the map', () => {
    const [map] = mapProcesses(t.front.httpd.pid, 'group');
    const write = asUid(OTHER_UID, `printf 'bob=tenant1\\n' > /proc/${map}/fd/1`);
    expect(write.status, write.stderr).not.toBe(0);
    const signal = asUid(OTHER_UID, `kill -STOP ${map}`);
    expect(signal.status, signal.stderr).not.toBe(0);
  });

  it('a daemon without --run-as (www-data, like the map) cannot forge an answer that routes bob into its group', async () => {
    const [map] = mapProcesses(t.front.httpd.pid, 'group');
    const write = asUid(WWW_DATA, `printf 'bob=tenant1\\n' > /proc/${map}/fd/1`);
    console.log(`write into /proc/${map}/fd/1 as www-data: exit ${write.status} ${write.stderr.trim()}`);
    const bob = await get('bob', 5_000);
    console.log(`bob after the forged line: ${JSON.stringify(bob)}`);
    // Whatever happened, the pipe is healed by the next (other) user's request.
    await waitFor(async () => (await get('alice', 3_000)).group === 'tenant1' && (await get('bob', 3_000)).group === 'tenant2', 10_000, 'routing healed');
    expect(bob.group, 'bob served by tenant1 (alice\'s group) from a forged map answer').not.toBe('tenant1');
  }, 30_000);

  it('a daemon without --run-as cannot make the map write a forged answer (ptrace, same uid, no Yama)', async () => {
    const [map] = mapProcesses(t.front.httpd.pid, 'group');
    const gdb = asUid(WWW_DATA, `gdb -nx -q -batch -p ${map} -ex 'call (long)write(1, "bob=tenant1\\n", 12)' -ex detach 2>&1 | tail -3`);
    console.log(`gdb as www-data: exit ${gdb.status} ${gdb.stdout.trim()} ${gdb.stderr.trim()}`);
    const bob = await get('bob', 5_000);
    console.log(`bob after the gdb write: ${JSON.stringify(bob)}`);
    await waitFor(async () => (await get('alice', 3_000)).group === 'tenant1' && (await get('bob', 3_000)).group === 'tenant2', 10_000, 'routing healed');
    expect(bob.group, "bob served by tenant1 (alice's group) from a forged map answer").not.toBe('tenant1');
  }, 30_000);

  it('a daemon without --run-as cannot stop every mapped request of the server (SIGSTOP of the map)', async () => {
    const [map] = mapProcesses(t.front.httpd.pid, 'group');
    const signal = asUid(WWW_DATA, `kill -STOP ${map}`);
    console.log(`kill -STOP ${map} as www-data: exit ${signal.status} ${signal.stderr.trim()}`);
    let results: Array<{ status: number | 'timeout'; group?: string }> = [];
    try {
      // 6 s: past the watchdog's 500 ms grace and a graceful reload (measured 1.3-1.5 s for a dead map).
      results = await Promise.all([get('alice', 6_000), get('bob', 6_000)]);
    } finally {
      process.kill(map!, 'SIGCONT');
    }
    console.log(`with the map stopped for 6 s: ${JSON.stringify(results)}; PLX0902 in the error log: ${/PLX0902/.test(t.front.httpd.errorLog())}`);
    await waitFor(async () => (await get('alice', 3_000)).group === 'tenant1', 10_000, 'served again after SIGCONT');
    expect(results.map((r) => r.status)).not.toContain('timeout');
  }, 30_000);
});
