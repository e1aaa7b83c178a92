// Daemon-group lifecycle on a running Apache, by the CLI alone: restart one group while another keeps serving,
// grow the pool with one graceful reload, fill groups with --group auto.
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { cliOk, startTestFront, waitUntilServed, type TestFront } from '../helpers/front.js';
import { waitFor } from '../helpers/wait.js';

let t: TestFront;

const ok = (args: string[], input?: string) => cliOk(t.cli, args, input);

// Sequential requests for one user until stopped; every response is recorded.
function requestStream(user: string, password: string) {
  const statuses: number[] = [];
  const groups = new Set<string>();
  let running = true;
  const done = (async () => {
    while (running) {
      const r = await t.get('/app/whoami', { user, password, fresh: true });
      statuses.push(r.status);
      if (r.status === 200) groups.add(r.json().group);
    }
  })();
  // Until `more` further requests have been answered: the stream runs on both sides of what the test does.
  const answered = (more: number) => {
    const target = statuses.length + more;
    return waitFor(() => statuses.length >= target, 15_000, `${more} more answers to ${user}'s requests`);
  };
  return { statuses, groups, answered, stop: async () => ((running = false), await done) };
}

beforeAll(async () => {
  t = await startTestFront(async (cli) => {
    await cli(['group', 'add', 'tenant1', '--settings', 'tenants.settings_generic', '--capacity', '2']);
    await cli(['group', 'add', 'tenant2', '--settings', 'tenants.settings_generic', '--capacity', '2']);
    await cli(['user', 'add', 'alice', '--group', 'tenant1', '--password-stdin'], 'alice-pw\n');
    await cli(['user', 'add', 'bob', '--group', 'tenant2', '--password-stdin'], 'bob-pw\n');
  });
  await waitUntilServed(t, 'alice', 'alice-pw');
}, 120_000);

afterAll(() => t?.close());

describe('daemon-group lifecycle', () => {
  it('restarts one group only, while another group keeps serving without an error', async () => {
    const before = (await t.get('/app/whoami', { user: 'alice', password: 'alice-pw' })).json().pid;
    const bobPid = (await t.get('/app/whoami', { user: 'bob', password: 'bob-pw' })).json().pid;
    const stream = requestStream('bob', 'bob-pw');
    await stream.answered(3);
    const restarted = await ok(['group', 'restart', 'tenant1', '--apache-pid-file', join(t.front.apacheDir, 'httpd.pid')]);
    expect(restarted.stdout).toMatch(/signalled 1 daemon process\(es\) of tenant1/);
    let after = before;
    const until = Date.now() + 10_000;
    while (after === before && Date.now() < until) {
      const r = await t.get('/app/whoami', { user: 'alice', password: 'alice-pw' });
      if (r.status === 200) after = r.json().pid;
    }
    await stream.answered(3);
    await stream.stop();
    expect(after).not.toBe(before);
    expect(stream.statuses.length).toBeGreaterThan(5);
    expect(stream.statuses.every((s) => s === 200)).toBe(true);
    expect([...stream.groups]).toEqual(['tenant2']);
    expect((await t.get('/app/whoami', { user: 'bob', password: 'bob-pw' })).json().pid).toBe(bobPid);
  });

  it('refuses to restart a group that is not running or does not exist', async () => {
    const pidFile = join(t.front.apacheDir, 'httpd.pid');
    expect((await t.cli(['group', 'restart', 'nosuch', '--apache-pid-file', pidFile])).code).toBe(1);
  });

  it('grows the pool with one graceful reload, dropping no request', async () => {
    const apachePid = t.front.httpd.pid;
    await ok(['group', 'add', 'tenant3', '--settings', 'tenants.settings_generic']);
    await ok(['user', 'add', 'carol', '--group', 'auto', '--password-stdin'], 'carol-pw\n');
    expect((await t.cli(['user', 'list', '--json'])).stdout).toContain('"name":"carol","daemon_group":"tenant3"');
    // Before the reload Apache has no daemon for tenant3: carol gets our 503, never another tenant.
    const early = await t.get('/app/whoami', { user: 'carol', password: 'carol-pw' });
    expect(early.status).toBe(503);
    const stream = requestStream('alice', 'alice-pw');
    await stream.answered(3);
    const reload = await ok([
      'apache',
      'config',
      '--out',
      t.front.httpd.configPath,
      '--reload',
      '--state-dir',
      t.front.apacheDir,
      '--listen',
      `127.0.0.1:${t.front.httpd.port}`,
      '--runtime-root',
      t.front.runtime.root,
      '--auth-cache-timeout',
      '60',
    ]);
    expect(reload.stdout).toMatch(/graceful reload sent/);
    const carol = await waitFor(
      async () => {
        const r = await t.get('/app/whoami', { user: 'carol', password: 'carol-pw' });
        return r.status === 200 ? r : undefined;
      },
      15_000,
      'carol served after the reload',
    );
    await stream.answered(3);
    await stream.stop();
    expect(carol.status).toBe(200);
    expect(carol.json().group).toBe('tenant3');
    // Every request got an answer (no connection dropped). A graceful reload restarts every mod_wsgi daemon
    // and every prg: map, so a request caught at that instant can get a 500 ("Truncated or oversized response
    // headers received from daemon process") or our 503 (daemon or map not back yet); nothing else may fail.
    const failures = stream.statuses.filter((s) => s !== 200);
    console.log(`graceful reload: ${stream.statuses.length} requests, ${failures.length} not 200 (${failures.join(',') || '-'})`);
    expect(failures.every((s) => s === 500 || s === 503)).toBe(true);
    expect(failures.length).toBeLessThanOrEqual(3);
    expect([...stream.groups]).toEqual(['tenant1']);
    expect(t.front.httpd.pid).toBe(apachePid);
    expect(() => process.kill(apachePid, 0)).not.toThrow();
  });

  it('fills groups with --group auto and says when the pool is full', async () => {
    // tenant1 (cap 2): alice; tenant2 (cap 2): bob; tenant3 (no cap): carol.
    await ok(['user', 'add', 'dan', '--group', 'auto', '--password-stdin']);
    await ok(['user', 'add', 'eve', '--group', 'auto', '--password-stdin']);
    const users = JSON.parse((await t.cli(['user', 'list', '--json'])).stdout) as Array<{ name: string; daemon_group: string }>;
    const groupOf = Object.fromEntries(users.map((u) => [u.name, u.daemon_group]));
    expect([groupOf.dan, groupOf.eve].sort()).toEqual(['tenant1', 'tenant2']);
    await ok(['group', 'set', 'tenant3', '--capacity', '1']);
    const full = await t.cli(['user', 'add', 'fay', '--group', 'auto', '--password-stdin']);
    expect(full.code).toBe(1);
    expect(full.stderr).toMatch(/no enabled daemon group has room/);
  });
});
