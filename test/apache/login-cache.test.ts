// Apache's login cache in memcached (apache config --login-cache), against a real Apache and a real memcached:
// logins outlive a graceful reload (nobody is checked again); a user changed with the CLI or with plain SQL loses
// their cached logins at once (plexer revoke): the old password refused at the next request, the new one accepted;
// tenants cannot reach the cache; a stopped cache costs a password check per request, never a login.
import { spawnSync } from 'node:child_process';
import { readFileSync, rmSync, statSync } from 'node:fs';
import { dirname } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { LOGIN_CACHE_CONTEXT, loginCacheKey } from '../../src/logins/cache-key.js';
import { hashPassword } from '../../src/password.js';
import { processIds } from '../../src/proc.js';
import { userIds } from '../../src/tenant-users.js';
import { memcachedCommand, storedLogins } from '../helpers/memcached.js';
import { cliOk, seedTwoTenants, startTestFront, type TestFront } from '../helpers/front.js';
import { waitFor } from '../helpers/wait.js';

let t: TestFront;
const users = ['alice', 'bob', ...Array.from({ length: 8 }, (_, i) => `user${i}`)];
const password: Record<string, string> = Object.fromEntries(users.map((u) => [u, `${u}-pw`]));

beforeAll(async () => {
  t = await startTestFront(
    async (cli) => {
      await seedTwoTenants(cli);
      for (const u of users.slice(2)) await cliOk(cli, ['user', 'add', u, '--group', 'tenant1', '--password-stdin'], `${u}-pw\n`);
    },
    { front: { loginCache: true, authCacheTimeoutSeconds: 28_800, extra: { loginChecker: true } } },
  );
  // Its first catch-up (no note yet: every user changed within the cache's life) done before anyone logs in.
  await waitFor(() => /caught up changed=/.test(t.front.httpd.errorLog()), 20_000, 'plexer revoke');
  // The users were made an hour ago: a revoker that starts now (after a reload) has nothing to catch up with
  // for them (the store's trigger would stamp the update with now()).
  await t.store.sql.query('ALTER TABLE users DISABLE TRIGGER users_touch');
  await t.store.sql.query(`UPDATE users SET updated_at = now() - interval '1 hour'`);
  await t.store.sql.query('ALTER TABLE users ENABLE TRIGGER users_touch');
}, 120_000);

afterAll(async () => {
  await t?.close();
});

const status = async (user: string, pw = password[user]!) => (await t.get('/app/whoami', { user, password: pw, fresh: true })).status;

// One user at a time here: mod_authn_socache skips a store only when another child holds its mutex.
const stored = async () => [...(await storedLogins(t.front.loginCache!.socket, users))].map(([k, cas]) => `${k}=${cas}`).join(' ');
const memcached = (command: string) => memcachedCommand(t.front.loginCache!.socket, command);

describe('the login cache in memcached', () => {
  it('keeps every login across a graceful reload: nobody is checked again', async () => {
    for (const u of users) expect(await status(u)).toBe(200);
    const before = await stored();
    expect(before.split(' ')).toHaveLength(users.length);
    await t.front.httpd.graceful();
    await waitFor(async () => (await status('alice')) === 200, 20_000, 'served after the reload');
    for (const u of users) expect(await status(u)).toBe(200);
    // Found in the cache, not stored again: no password was checked after the reload.
    expect(await stored()).toBe(before);
    expect(t.front.httpd.errorLog()).toMatch(/caught up changed=0 since=last-revoker/);
  }, 60_000);

  it('refuses the old password at once after user passwd, and accepts the new one', async () => {
    expect(await status('user0')).toBe(200);
    await cliOk(t.cli, ['user', 'passwd', 'user0', '--password-stdin'], 'user0-new\n');
    const changed = Date.now();
    await waitFor(async () => (await status('user0')) === 401, 1_000, 'the old password refused');
    expect(Date.now() - changed).toBeLessThanOrEqual(1_000);
    password.user0 = 'user0-new';
    expect(await status('user0')).toBe(200);
    // Not counted against the user: the new password keeps working.
    expect(await status('user0')).toBe(200);
  }, 30_000);

  it('removes the entries again once a check of the old password still running at the change would have ended', async () => {
    expect(await status('user3')).toBe(200);
    await cliOk(t.cli, ['user', 'passwd', 'user3', '--password-stdin'], 'user3-new\n');
    await waitFor(async () => (await status('user3')) === 401, 1_000, 'the old password refused');
    // What such a late check leaves: its success stored after the first removal.
    const key = loginCacheKey(LOGIN_CACHE_CONTEXT.basic, 'user3');
    await memcached(`set ${key} 0 0 4\r\nlate\r\n`);
    expect(await memcached(`get ${key}\r\n`)).toMatch(/^VALUE /);
    await waitFor(async () => (await memcached(`get ${key}\r\n`)) === 'END\r\n', 15_000, 'the late entry removed');
    password.user3 = 'user3-new';
  }, 30_000);

  it('refuses the old password at once after a password changed with plain SQL', async () => {
    expect(await status('user1')).toBe(200);
    const hash = await hashPassword('user1-sql', 4);
    await t.store.sql.query('UPDATE users SET password_hash = $1 WHERE name = $2', [hash, 'user1']);
    await waitFor(async () => (await status('user1')) === 401, 1_000, 'the old password refused');
    password.user1 = 'user1-sql';
    expect(await status('user1')).toBe(200);
  }, 30_000);

  it("is reached by Apache's workers and root alone: a tenant's OS user cannot connect", () => {
    const dir = statSync(dirname(t.front.loginCache!.socket));
    expect(dir.uid).toBe(userIds('www-data')!.uid);
    expect(dir.mode & 0o777).toBe(0o700);
    for (const tenant of ['nobody', 'daemon']) {
      const tried = spawnSync(
        'runuser',
        [
          '-u',
          tenant,
          '--',
          '/usr/bin/python3',
          '-c',
          `import socket; socket.socket(socket.AF_UNIX).connect('${t.front.loginCache!.socket}')`,
        ],
        { encoding: 'utf8' },
      );
      expect(tried.status, tenant).not.toBe(0);
      expect(tried.stderr).toMatch(/PermissionError/);
    }
  });

  it("is checked by plexer doctor: memcached answering, out of tenants' reach, the revoker running", async () => {
    const doctor = await t.cli(['doctor', '--apache-config', `${t.front.apacheDir}/httpd.conf`]);
    expect(doctor.stdout).toMatch(new RegExp(`^ok +login cache: memcached [0-9.]+ on ${t.front.loginCache!.socket} `, 'm'));
  });

  it('restarts plexer revoke when it dies (Apache restarts its piped loggers), and revokes again', async () => {
    const revokers = () => processIds().filter((pid) => cmdline(pid).includes(' revoke --socket '));
    const [first] = revokers();
    expect(first).toBeDefined();
    process.kill(first!, 'SIGKILL');
    await waitFor(() => revokers().some((pid) => pid !== first), 20_000, 'a new plexer revoke');
    await waitFor(() => (t.front.httpd.errorLog().match(/revoke started/g) ?? []).length >= 3, 20_000, 'the new one listening');
    expect(await status('user2')).toBe(200);
    await cliOk(t.cli, ['user', 'passwd', 'user2', '--password-stdin'], 'user2-new\n');
    await waitFor(async () => (await status('user2')) === 401, 2_000, 'the old password refused');
    password.user2 = 'user2-new';
    expect(await status('user2')).toBe(200);
  }, 60_000);

  it('checks passwords in plexer checker; with it unreachable, authn checks by itself', async () => {
    const socket = `${t.front.apacheDir}/checker.sock`;
    await waitFor(() => /checker started/.test(t.front.httpd.errorLog()), 20_000, 'plexer checker');
    expect(statSync(socket).mode & 0o777).toBe(0o660);
    // Users nobody has logged in as yet: their checks reach authn (a cached user's never do).
    for (const u of ['ck1', 'ck2']) {
      await cliOk(t.cli, ['user', 'add', u, '--group', 'tenant1', '--password-stdin'], `${u}-pw\n`);
      password[u] = `${u}-pw`;
    }
    const before = t.front.httpd.errorLog().length;
    expect(await status('ck1', 'wrong')).toBe(401);
    expect(await status('ck1')).toBe(200);
    expect(t.front.httpd.errorLog().slice(before)).not.toMatch(/checker unreachable/);
    // The checker's socket gone (the checker itself keeps running): the next check runs in authn.
    rmSync(socket);
    expect(await status('ck2', 'wrong')).toBe(401);
    expect(await status('ck2')).toBe(200);
    await waitFor(() => /checker unreachable; checking here/.test(t.front.httpd.errorLog()), 5_000, 'authn checking by itself');
  }, 30_000);

  it('still logs users in when the cache is down: plexer checks each request', async () => {
    await t.front.loginCache!.stop();
    for (const u of ['alice', 'bob']) expect(await status(u)).toBe(200);
    expect(await status('alice', 'wrong')).toBe(401);
  }, 30_000);
});

function cmdline(pid: number): string {
  try {
    return readFileSync(`/proc/${pid}/cmdline`, 'utf8').replaceAll('\0', ' ');
  } catch {
    return '';
  }
}
