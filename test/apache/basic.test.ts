// Issue 3's scenarios against a real Apache (Debian's apache2 + mod_wsgi + mod_authnz_external + mod_authn_socache),
// real plexer helpers and a real Django per daemon group.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { cliOk, startTestFront, waitUntilServed, type TestFront } from '../helpers/front.js';
import { waitFor } from '../helpers/wait.js';

let t: TestFront;
let apachePid: number;

beforeAll(async () => {
  t = await startTestFront(
    async (cli) => {
      for (const g of ['tenant1', 'tenant2', 'tenant3']) await cliOk(cli, ['group', 'add', g, '--settings', 'tenants.settings_generic']);
      await cliOk(cli, ['user', 'add', 'alice', '--group', 'tenant1', '--password-stdin'], 'alice-pw\n');
      await cliOk(cli, ['user', 'add', 'bob', '--group', 'tenant2', '--password-stdin'], 'bob-pw\n');
      await cliOk(cli, ['user', 'add', 'erin', '--group', 'tenant1', '--password-stdin'], 'erin-pw\n');
      await cliOk(cli, ['user', 'add', 'dave', '--group', 'none', '--password-stdin'], 'dave-pw\n');
      await cliOk(cli, ['user', 'disable', 'erin']);
    },
    { front: { authCacheTimeoutSeconds: 3 } },
  );
  apachePid = t.front.httpd.pid;
  await waitUntilServed(t, 'alice', 'alice-pw');
}, 120_000);

afterAll(async () => {
  // Apache stayed up through everything: the same parent from start to end.
  expect(t.front.httpd.pid).toBe(apachePid);
  expect(() => process.kill(apachePid, 0)).not.toThrow();
  await t?.close();
});

describe('real Apache: authentication and routing', () => {
  it('asks for credentials and refuses wrong, unknown and disabled users', async () => {
    expect((await t.get('/app/whoami')).status).toBe(401);
    expect((await t.get('/app/whoami', { user: 'alice', password: 'nope' })).status).toBe(401);
    expect((await t.get('/app/whoami', { user: 'nobody', password: 'x' })).status).toBe(401);
    expect((await t.get('/app/whoami', { user: 'erin', password: 'erin-pw' })).status).toBe(401);
    // Each with its user and reason in the access log; an answer that is no error page has none.
    for (const user of ['-', 'alice', 'nobody', 'erin']) {
      await waitFor(
        () => new RegExp(` ${user} \\[[^\\]]+\\] 401 .* reason=login-refused$`, 'm').test(t.front.httpd.accessLog()),
        5_000,
        `${user}'s 401 in the access log, reason=login-refused`,
      );
    }
  });

  it('serves each user from their own daemon group and database', async () => {
    const alice = await t.get('/app/whoami', { user: 'alice', password: 'alice-pw' });
    expect(alice.status).toBe(200);
    expect(alice.json()).toMatchObject({ group: 'tenant1', user: 'alice', tenant_data: 'tenant tenant1' });
    expect(alice.json().database).toMatch(/tenant1\.sqlite3$/);
    const bob = await t.get('/app/whoami', { user: 'bob', password: 'bob-pw' });
    expect(bob.json()).toMatchObject({ group: 'tenant2', user: 'bob', tenant_data: 'tenant tenant2' });
    expect(bob.json().pid).not.toBe(alice.json().pid);
    await waitFor(() => / bob \[[^\]]+\] 200 .* group=tenant2 reason=-$/m.test(t.front.httpd.accessLog()), 5_000, "bob's 200, no reason");
  });

  it('gives a user without a group our own error page, not another tenant', async () => {
    const dave = await t.get('/app/whoami', { user: 'dave', password: 'dave-pw' });
    expect(dave.status).toBe(403);
    expect(dave.body).toContain('plexer-error:403');
    expect(t.front.httpd.errorLog()).not.toMatch(/No WSGI daemon process called/);
    // The access log names who got it (the error page Apache redirected to has no user of its own), and why.
    await waitFor(
      () => / dave \[[^\]]+\] 403 .* reason=no-group$/m.test(t.front.httpd.accessLog()),
      5_000,
      "dave's 403 in the access log, reason=no-group",
    );
  });

  it('lets nothing the client sends choose the group', async () => {
    const forged = await t.get('/app/whoami?group=tenant2&PROCESS_GROUP=tenant2', {
      user: 'alice',
      password: 'alice-pw',
      headers: {
        'Process-Group': 'tenant2',
        'X-Remote-User': 'bob',
        Cookie: 'PROCESS_GROUP=tenant2; group=tenant2',
        'Plexer-Settings': 'x',
      },
    });
    expect(forged.status).toBe(200);
    expect(forged.json()).toMatchObject({ group: 'tenant1', user: 'alice' });
    const noGroup = await t.get('/app/whoami?group=tenant1', {
      user: 'dave',
      password: 'dave-pw',
      headers: { 'Process-Group': 'tenant1' },
    });
    expect(noGroup.status).toBe(403);
  });
});

describe('real Apache: changes while it runs', () => {
  it('serves a moved user from the new group within a second', async () => {
    expect((await t.get('/app/whoami', { user: 'bob', password: 'bob-pw' })).json().group).toBe('tenant2');
    // tenant3's Django loaded (and its database made) beforehand: what is timed is the move reaching Apache, not
    // a first load.
    await cliOk(t.cli, ['user', 'add', 'dora', '--group', 'tenant3', '--password-stdin'], 'dora-pw\n');
    expect((await t.get('/app/whoami', { user: 'dora', password: 'dora-pw' })).json().group).toBe('tenant3');
    await cliOk(t.cli, ['user', 'move', 'bob', '--group', 'tenant3']);
    const moved = performance.now();
    let group = '';
    while (group !== 'tenant3' && performance.now() - moved < 2_000) {
      group = (await t.get('/app/whoami', { user: 'bob', password: 'bob-pw' })).json().group;
    }
    const elapsed = performance.now() - moved;
    console.log(`move → first request served by the new group: ${elapsed.toFixed(1)} ms`);
    expect(group).toBe('tenant3');
    expect(elapsed).toBeLessThan(1_000);
  });

  it('lets a new user log in at once', async () => {
    await cliOk(t.cli, ['user', 'add', 'carol', '--group', 'tenant2', '--password-stdin'], 'carol-pw\n');
    const carol = await t.get('/app/whoami', { user: 'carol', password: 'carol-pw' });
    expect(carol.status).toBe(200);
    expect(carol.json().group).toBe('tenant2');
  });

  it('cuts a deleted or disabled user off at the next request, though their password is still cached', async () => {
    await cliOk(t.cli, ['user', 'add', 'frank', '--group', 'tenant1', '--password-stdin'], 'frank-pw\n');
    await cliOk(t.cli, ['user', 'add', 'gina', '--group', 'tenant1', '--password-stdin'], 'gina-pw\n');
    expect((await t.get('/app/whoami', { user: 'frank', password: 'frank-pw' })).status).toBe(200);
    expect((await t.get('/app/whoami', { user: 'gina', password: 'gina-pw' })).status).toBe(200);
    await cliOk(t.cli, ['user', 'del', 'frank']);
    await cliOk(t.cli, ['user', 'disable', 'gina']);
    const statuses = async () => [
      (await t.get('/app/whoami', { user: 'frank', password: 'frank-pw' })).status,
      (await t.get('/app/whoami', { user: 'gina', password: 'gina-pw' })).status,
    ];
    // socache still holds the passwords, but once the map has heard the change it no longer routes them: our
    // 403, never a tenant (as in "serves a moved user from the new group within a second").
    const changed = performance.now();
    let seen = await statuses();
    while (seen.includes(200) && performance.now() - changed < 2_000) seen = await statuses();
    expect(seen).toEqual([403, 403]);
    expect(performance.now() - changed).toBeLessThan(1_000);
    // Once AuthnCacheTimeout (3 s here) has passed, the authenticator refuses them outright; until then they
    // stay refused by the map.
    await waitFor(
      async () => {
        const now = await statuses();
        expect(now.every((status) => status === 403 || status === 401)).toBe(true);
        return now.every((status) => status === 401);
      },
      10_000,
      'the cached passwords to expire (AuthnCacheTimeout 3 s)',
      200,
    );
  });

  // mod_authn_socache answers a cached user with a different password as a mismatch (AUTH_DENIED), so the
  // external authenticator is not asked: until AuthnCacheTimeout passes, the old password keeps working and
  // the new one is refused. Documented in apache/LOGINS.md ("What stays cached in Apache"); plexer authd (mod_authnz_fcgi) has no such window.
  it('switches a changed password over when AuthnCacheTimeout has passed', async () => {
    expect((await t.get('/app/whoami', { user: 'alice', password: 'alice-pw' })).status).toBe(200);
    await cliOk(t.cli, ['user', 'passwd', 'alice', '--password-stdin'], 'alice-new\n');
    expect((await t.get('/app/whoami', { user: 'alice', password: 'alice-pw' })).status).toBe(200);
    expect((await t.get('/app/whoami', { user: 'alice', password: 'alice-new' })).status).toBe(401);
    // The old password keeps working until AuthnCacheTimeout (3 s here) has passed, then is refused.
    await waitFor(
      async () => {
        const old = (await t.get('/app/whoami', { user: 'alice', password: 'alice-pw' })).status;
        expect([200, 401]).toContain(old);
        return old === 401;
      },
      10_000,
      'the old password to leave the cache (AuthnCacheTimeout 3 s)',
      200,
    );
    expect((await t.get('/app/whoami', { user: 'alice', password: 'alice-new' })).status).toBe(200);
  });
});
