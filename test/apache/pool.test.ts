// The slot pool against a real Apache (apache/POOL.md, "Accounts and slots"): accounts bound to slots on demand, never a
// reload, one account per slot whatever the routing says, walls that move with the binding.
import { spawn, spawnSync } from 'node:child_process';
import { chmodSync, chownSync, existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { listWsgiDaemons } from '../../src/apache/daemon-restart.js';
import { processIdentity, processIds, processTitle, socketInodes, unixSockets } from '../../src/proc.js';
import { userIds } from '../../src/tenant-users.js';
import { cliOk, startTestFront, type TestFront } from '../helpers/front.js';
import { runPlexer } from '../helpers/plexer.js';
import { removePoolAccounts, testPoolPrefix } from '../helpers/pool.js';
import { waitFor } from '../helpers/wait.js';

const prefix = testPoolPrefix();
const SLOTS = 3;
let t: TestFront;
const accounts = ['tenant1', 'tenant2', 'tenant3', 'tenant4'];
const userOf: Record<string, string> = { tenant1: 'alice', tenant2: 'bob', tenant3: 'carol', tenant4: 'dave' };

beforeAll(async () => {
  t = await startTestFront(
    async (cli) => {
      for (const a of accounts) await cliOk(cli, ['group', 'add', a, '--settings', 'tenants.settings_generic']);
      for (const a of accounts) await cliOk(cli, ['user', 'add', userOf[a]!, '--group', a, '--password-stdin'], `${userOf[a]}-pw\n`);
    },
    {
      front: { extra: { pool: { slots: SLOTS, prefix, waitSeconds: 3 } } },
      // tenant4 comes from an installation without a pool: its directory and database belong to its old run-as user
      // (here nobody), 0700 and 0644, as `apache config` and SQLite left them. Its first request writes there.
      beforeStart: async (stateDir) => {
        const dir = join(stateDir, 'apache', 'data', 'tenant4');
        mkdirSync(dir, { recursive: true });
        const made = spawnSync('/usr/bin/python3', [
          '-c',
          `import sqlite3; sqlite3.connect('${dir}/tenant4.sqlite3').execute('CREATE TABLE t (x)')`,
        ]);
        expect(made.status, String(made.stderr)).toBe(0);
        for (const path of [dir, join(dir, 'tenant4.sqlite3')]) chownSync(path, 65534, 65534);
        chmodSync(dir, 0o700);
        return {};
      },
    },
  );
  // Apache starts the binder with its other piped loggers: until it listens, a first request gets our 503.
  await waitFor(() => /binder started/.test(t.front.httpd.errorLog()), 20_000, 'the binder');
}, 120_000);

afterAll(async () => {
  await t?.close();
  await removePoolAccounts(prefix);
});

interface Whoami {
  group: string;
  settings: string;
  slot: string;
  user: string;
  database: string;
  pid: number;
  tenant_data: string;
}

async function ask(user: string, path = '/app/whoami') {
  const response = await fetch(`${t.front.httpd.url}${path}`, {
    headers: { authorization: `Basic ${Buffer.from(`${user}:${user}-pw`).toString('base64')}`, connection: 'close' },
    redirect: 'manual',
  });
  const body = await response.text();
  return { status: response.status, body, headers: response.headers, json: () => JSON.parse(body) as Whoami };
}

// A 200 from the user's own account and database, whatever slot served it.
async function servedOwn(account: string, path?: string): Promise<Whoami> {
  const r = await ask(userOf[account]!, path);
  expect(r.status, `${r.body}\n${t.front.httpd.errorLog().slice(-3000)}`).toBe(200);
  const w = r.json();
  expect(w).toMatchObject({ group: account, user: userOf[account], tenant_data: 'tenant ' + account });
  expect(w.slot).toMatch(/^slot-[1-3]$/);
  expect(w.database).toBe(join(t.front.apacheDir, 'data', account, `${account}.sqlite3`));
  return w;
}

const slotPids = () => new Map(listWsgiDaemons(t.front.httpd.pid).map((d) => [d.title, d.pid]));
const bindCount = (account: string) =>
  (t.front.httpd.errorLog().match(new RegExp(`slot bound slot=slot-\\d+ account=${account}( |$)`, 'gm')) ?? []).length;
const bindings = () =>
  new Map(
    readFileSync(join(t.front.apacheDir, 'bindings.txt'), 'utf8')
      .split('\n')
      .filter((l) => l && !l.startsWith('#'))
      .map((l) => l.split(' ') as [string, string]),
  );
// Requests the slots are serving now: connections accepted on their sockets.
// (of one slot: on the socket its process listens on).
const inFlight = (slot?: string) => {
  const sockets = unixSockets();
  let paths = new Set(sockets.filter((e) => e.listening && e.path.startsWith(join(t.front.apacheDir, 'wsgi'))).map((e) => e.path));
  if (slot !== undefined) {
    const held = new Set(
      listWsgiDaemons(t.front.httpd.pid)
        .filter((d) => d.title === `(wsgi:${slot})`)
        .flatMap((d) => [...socketInodes(d.pid)]),
    );
    paths = new Set(sockets.filter((e) => e.listening && held.has(e.inode)).map((e) => e.path));
    // Accepted by the slot's process (a connection still in the socket's queue would be served by the next one).
    return sockets.filter((e) => e.connected && !e.listening && paths.has(e.path) && held.has(e.inode)).length;
  }
  return sockets.filter((e) => e.connected && !e.listening && paths.has(e.path)).length;
};
const uidOf = (user: string) => userIds(user)!.uid;
const asUser = (user: string, ...command: string[]) => spawnSync('runuser', ['-u', user, '--', ...command], { encoding: 'utf8' });

describe('a pool of slots bound on demand', () => {
  it('serves more accounts than slots, in turn, each from its own account and database', async () => {
    for (let round = 0; round < 3; round++) for (const a of accounts) await servedOwn(a);
    expect(bindings().size).toBe(SLOTS);
    // tenant4's data from before the pool was handed to the slot users in turn, and written to (a 500 otherwise).
    expect(statSync(join(t.front.apacheDir, 'data', 'tenant4', 'tenant4.sqlite3')).uid).not.toBe(65534);
  }, 120_000);

  it('shows the bindings with plexer slots', async () => {
    const shown = await cliOk(t.cli, ['slots', '--state-dir', t.front.apacheDir]);
    for (const [account, slot] of bindings()) expect(shown.stdout).toMatch(new RegExp(`^${slot} +bound +${account} `, 'm'));
    expect(JSON.parse((await cliOk(t.cli, ['slots', '--state-dir', t.front.apacheDir, '--json'])).stdout).slots).toHaveLength(SLOTS);
  });

  it('is rendered by apache config --slots, which says that accounts need no reload, and group add says so too', async () => {
    const dir = mkdtempSync('/tmp/pxs-');
    try {
      const out = join(dir, 'httpd.conf');
      const wrote = await cliOk(t.cli, ['apache', 'config', '--slots', '2', '--pool-prefix', prefix, '--state-dir', dir, '--out', out]);
      expect(wrote.stdout).toContain('a pool of 2 slots');
      expect(wrote.stdout).toContain('come and go without a reload');
      const text = readFileSync(out, 'utf8');
      expect(text.match(/^WSGIDaemonProcess slot-\d+ /gm)).toHaveLength(2);
      expect(text).toContain(`user=${prefix}-s2 group=${prefix}-s2`);
      expect(existsSync(join(dir, 'bindings.txt'))).toBe(true);
      const added = await cliOk(t.cli, ['group', 'add', 'tenant9', '--settings', 'tenants.settings_generic', '--apache-config', out]);
      expect(added.stdout).toMatch(/served from the pool's 2 slots from their first request \(no reload\)/);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });

  it('serves a new account without a reload; the slots it did not take keep their processes', async () => {
    const apache = t.front.httpd.pid;
    const before = slotPids();
    await cliOk(t.cli, ['group', 'add', 'newco', '--settings', 'tenants.settings_generic']);
    await cliOk(t.cli, ['user', 'add', 'nina', '--group', 'newco', '--password-stdin'], 'nina-pw\n');
    userOf.newco = 'nina';
    const w = await servedOwn('newco');
    const after = slotPids();
    expect(t.front.httpd.pid).toBe(apache);
    const changed = [...before].filter(([title, pid]) => after.get(title) !== pid).map(([title]) => title);
    expect(changed).toEqual([`(wsgi:${w.slot})`]);
  }, 60_000);

  it('binds an account once for simultaneous first requests', async () => {
    await cliOk(t.cli, ['group', 'add', 'rushco', '--settings', 'tenants.settings_generic']);
    await cliOk(t.cli, ['user', 'add', 'rita', '--group', 'rushco', '--password-stdin'], 'rita-pw\n');
    userOf.rushco = 'rita';
    const served = await Promise.all(Array.from({ length: 6 }, () => servedOwn('rushco')));
    expect(new Set(served.map((w) => w.slot)).size).toBe(1);
    expect(bindCount('rushco')).toBe(1);
  }, 60_000);

  it("moves the walls with the binding: a slot's user reads its account's data and no other's", async () => {
    // Every account has been bound at least once, and each slot has served several: every data directory exists.
    const bound = bindings();
    for (let slot = 1; slot <= SLOTS; slot++) {
      const user = `${prefix}-s${slot}`;
      const own = [...bound].find(([, s]) => s === `slot-${slot}`)?.[0];
      expect(own).toBeDefined();
      for (const account of Object.keys(userOf)) {
        const file = join(t.front.apacheDir, 'data', account, `${account}.sqlite3`);
        expect(asUser(user, 'test', '-r', file).status, `${user} reading ${account}`).toBe(account === own ? 0 : 1);
      }
      for (const secret of [t.configPath, join(t.front.apacheDir, 'bindings.txt'), join(t.front.apacheDir, 'pool.json')]) {
        expect(asUser(user, 'cat', secret).status, `${user} reading ${secret}`).not.toBe(0);
      }
      for (let other = 1; other <= SLOTS; other++) {
        if (other === slot) continue;
        expect(asUser(user, 'cat', join(t.front.apacheDir, 'slots', `slot-${other}`, 'binding')).status).not.toBe(0);
      }
    }
  }, 60_000);

  it('runs group exec for an account as the slot user that serves it, with its data', async () => {
    const exec = (account: string, ...command: string[]) =>
      runPlexer([
        'group',
        'exec',
        account,
        '--apache-config',
        join(t.front.apacheDir, 'httpd.conf'),
        '--config',
        t.configPath,
        '--',
        ...command,
      ]);
    const ran = await exec('tenant1', 'sh', '-c', 'id -u; echo "$PLEXER_DATA_DIR $DJANGO_SETTINGS_MODULE"');
    expect(ran.code, ran.stderr).toBe(0);
    const slot = bindings().get('tenant1')!;
    expect(slot).toBeDefined();
    const user = `${prefix}-s${slot.slice('slot-'.length)}`;
    expect(ran.stderr).toContain(`running as ${user}, the user of ${slot}`);
    expect(ran.stdout).toContain(
      `[tenant1] ${uidOf(user)}\n[tenant1] ${join(t.front.apacheDir, 'data', 'tenant1')} tenants.settings_generic`,
    );
    // Django's own chores, in the account's own database (its first request migrated it already, or this does):
    // alice becomes its superuser.
    const migrated = await exec('tenant1', 'python3', 'manage.py', 'migrate');
    expect(migrated.code, migrated.stderr).toBe(0);
    const made = await exec('tenant1', 'python3', 'manage.py', 'staff', 'alice');
    expect(made.code, made.stderr + made.stdout).toBe(0);
    expect(made.stdout).toContain('[tenant1] alice: staff and superuser');
    // Without the pool's config it would run as Apache's own user, over the account's directory: refused.
    const owner = statSync(join(t.front.apacheDir, 'data', 'tenant1')).uid;
    const blind = await runPlexer(
      ['group', 'exec', 'tenant1', '--data-dir', join(t.front.apacheDir, 'data'), '--config', t.configPath, '--', 'id'],
      {
        env: { APACHE_CONFDIR: '/nonexistent' },
      },
    );
    expect(blind.code).not.toBe(0);
    expect(blind.stderr).toMatch(/an account served from a pool\? give --apache-config FILE/);
    expect(statSync(join(t.front.apacheDir, 'data', 'tenant1')).uid).toBe(owner);
    const unknown = await exec('nosuch', 'true');
    expect(unknown.code).not.toBe(0);
    expect(unknown.stderr).toMatch(/no daemon group "nosuch"/);
    // Released when the command ended: the binder logged the hold's end.
    await waitFor(() => /slot hold ended/.test(t.front.httpd.errorLog()), 5_000, 'the hold released');
    // The binder's control socket is root's alone, and takes nothing but "hold ACCOUNT".
    const control = join(t.front.apacheDir, 'binder-control.sock');
    expect(statSync(control).mode & 0o777).toBe(0o600);
    expect(statSync(control).uid).toBe(0);
    const talk = (line: string, user?: string) =>
      spawnSync(
        user ? 'runuser' : '/usr/bin/python3',
        [
          ...(user ? ['-u', user, '--', '/usr/bin/python3'] : []),
          '-c',
          `import socket; s = socket.socket(socket.AF_UNIX); s.connect('${control}'); s.sendall(b'${line}\\n'); print(s.recv(200).decode().strip())`,
        ],
        { encoding: 'utf8' },
      );
    expect(talk('hold ../etc').stdout.trim()).toBe('error expected "hold ACCOUNT"');
    expect(talk('release tenant1').stdout.trim()).toBe('error expected "hold ACCOUNT"');
    const other = talk('hold tenant1', `${prefix}-s2`);
    expect(other.status).not.toBe(0);
    expect(other.stderr).toMatch(/PermissionError/);
  }, 60_000);

  it("gives each account a real Django: the user Apache logged in, an admin for the account's own staff, CSRF", async () => {
    const admin = async (user: string, path: string, o: { cookie?: string; form?: Record<string, string> } = {}) => {
      const headers: Record<string, string> = { authorization: `Basic ${Buffer.from(`${user}:${user}-pw`).toString('base64')}` };
      if (o.cookie) headers.cookie = o.cookie;
      const body = o.form ? new URLSearchParams(o.form).toString() : undefined;
      if (body) headers['content-type'] = 'application/x-www-form-urlencoded';
      let r = await fetch(`${t.front.httpd.url}${path}`, { method: body ? 'POST' : 'GET', headers, body, redirect: 'manual' });
      // A POST whose account had no slot: repeated, as a browser does.
      if (r.status === 307) r = await fetch(`${t.front.httpd.url}${path}`, { method: 'POST', headers, body, redirect: 'manual' });
      return { status: r.status, body: await r.text(), location: r.headers.get('location'), cookies: r.headers.getSetCookie() };
    };
    const alice = await ask('alice');
    expect(alice.json()).toMatchObject({ user: 'alice', django_user: 'alice', staff: true });
    expect((await ask('bob')).json()).toMatchObject({ user: 'bob', django_user: 'bob', staff: false });
    const index = await admin('alice', '/app/admin/');
    expect(index.status, index.body.slice(0, 500)).toBe(200);
    expect(index.body).toContain('Site administration');
    // bob is a user of his own account's Django, not its staff: its admin sends him to its login page.
    const refused = await admin('bob', '/app/admin/');
    expect(refused.status).toBe(302);
    expect(refused.location).toBe('/app/admin/login/?next=/app/admin/');
    // A form post needs the CSRF token of alice's own session.
    const form = await admin('alice', '/app/admin/auth/group/add/');
    expect(form.status).toBe(200);
    const token = /name="csrfmiddlewaretoken" value="([^"]+)"/.exec(form.body)?.[1];
    const cookie = form.cookies.map((c) => c.split(';')[0]).join('; ');
    expect(token).toBeDefined();
    expect(cookie).toMatch(/tenant_csrftoken=/);
    expect((await admin('alice', '/app/admin/auth/group/add/', { cookie, form: { name: 'editors' } })).status).toBe(403);
    const added = await admin('alice', '/app/admin/auth/group/add/', { cookie, form: { name: 'editors', csrfmiddlewaretoken: token! } });
    expect(added.status, added.body.slice(0, 2000)).toBe(302);
    // In tenant1's database, and in no other account's.
    const groupsIn = (account: string) =>
      spawnSync(
        '/usr/bin/python3',
        [
          '-c',
          `import sqlite3; print(sqlite3.connect('${join(t.front.apacheDir, 'data', account, `${account}.sqlite3`)}').execute("SELECT count(*) FROM auth_group WHERE name = 'editors'").fetchone()[0])`,
        ],
        { encoding: 'utf8' },
      ).stdout.trim();
    expect(groupsIn('tenant1')).toBe('1');
    expect(groupsIn('tenant2')).toBe('0');
  }, 60_000);

  it("seals every slot's processes like any daemon: no shared memory of Apache's, no pipe of its helpers", async () => {
    const slots = listWsgiDaemons(t.front.httpd.pid);
    expect(slots).toHaveLength(SLOTS);
    for (const { pid, title } of slots) {
      const shared = readFileSync(`/proc/${pid}/maps`, 'utf8')
        .split('\n')
        .filter((line) => /^\S+ \S*w\S*s /.test(line) || / \/(dev\/zero|SYSV)/.test(line));
      expect(shared, title).toEqual([]);
    }
  });

  it('leaves nothing of an account to the next one on its slot: its processes, /tmp files and shared memory go', async () => {
    const [account, slot] = [...bindings()][0]!;
    const user = `${prefix}-s${slot.slice('slot-'.length)}`;
    // What tenant code could leave behind: a detached process (holding the account's group) and a file in /tmp.
    const leftover = spawn('runuser', ['-u', user, '--', 'sleep', '600'], { stdio: 'ignore', detached: true });
    const tmpFile = `/tmp/${prefix}-left-by-${account}`;
    expect(asUser(user, 'sh', '-c', `echo secret > ${tmpFile}`).status).toBe(0);
    // And a System V shared memory segment, which outlives its process.
    const made = asUser(user, '/usr/bin/python3', '-c', 'import ctypes; print(ctypes.CDLL(None).shmget(0x5ec2e7, 4096, 0o1600))');
    const shmid = made.stdout.trim();
    expect(Number(shmid), made.stderr).toBeGreaterThanOrEqual(0);
    expect(readFileSync('/proc/sysvipc/shm', 'utf8')).toMatch(new RegExp(`^\\s*\\d+\\s+${shmid}\\s`, 'm'));
    await waitFor(
      () => processIds().some((pid) => processIdentity(pid)?.uid === uidOf(user) && processTitle(pid) === 'sleep'),
      5_000,
      'the leftover',
    );
    // Every other account in turn, until this slot serves another one.
    for (const other of Object.keys(userOf).filter((a) => a !== account)) {
      await servedOwn(other);
      if (bindings().get(account) !== slot) break;
    }
    expect(bindings().get(account)).not.toBe(slot);
    await waitFor(() => leftover.exitCode !== null || leftover.signalCode !== null, 5_000, 'the leftover process killed');
    expect(existsSync(tmpFile)).toBe(false);
    expect(readFileSync('/proc/sysvipc/shm', 'utf8')).not.toMatch(new RegExp(`^\\s*\\d+\\s+${shmid}\\s`, 'm'));
  }, 60_000);

  it('takes the slot from an account disabled or given other settings (CLI or psql); its next request binds again', async () => {
    const [account] = [...bindings()][0]!;
    const user = userOf[account]!;
    await cliOk(t.cli, ['group', 'set', account, '--disable']);
    await waitFor(() => !bindings().has(account), 5_000, `${account} to lose its slot`);
    // As without a pool, the map knows no instance for a disabled group's users: our 403 page.
    expect((await ask(user)).status).toBe(403);
    expect(t.front.httpd.errorLog()).toMatch(
      new RegExp(`account changed; releasing its slot account=${account} reason="account disabled"`),
    );
    await cliOk(t.cli, ['group', 'set', account, '--enable']);
    await servedOwn(account);
    // Other settings, written with psql: the slot is emptied and the next request loads the new module.
    await t.store.sql.query(`UPDATE daemon_groups SET settings_module = 'tenants.settings_beta' WHERE name = $1`, [account]);
    await waitFor(() => !bindings().has(account), 5_000, `${account} to lose its slot again`);
    const served = await ask(user);
    expect(served.status, `${served.body}\n${t.front.httpd.errorLog().slice(-4000)}`).toBe(200);
    expect(served.json()).toMatchObject({ group: account, settings: 'tenants.settings_beta' });
    // Back as it was, and every slot bound again (releases freed slots, bindings meanwhile took others), for the
    // tests that follow.
    await t.store.sql.query(`UPDATE daemon_groups SET settings_module = 'tenants.settings_generic' WHERE name = $1`, [account]);
    await waitFor(() => !bindings().has(account), 5_000, `${account} to lose its slot once more`);
    const status = () => JSON.parse(readFileSync(join(t.front.apacheDir, 'pool.json'), 'utf8')) as { slots: Array<{ phase: string }> };
    await waitFor(() => status().slots.every((s) => s.phase !== 'emptying'), 10_000, 'no slot being emptied');
    for (const a of accounts) await servedOwn(a);
    expect(bindings().size).toBe(SLOTS);
  }, 60_000);

  it('refuses, inside the slot, a request routed for another account (the bindings map forged as root)', async () => {
    const path = join(t.front.apacheDir, 'bindings.txt');
    const original = readFileSync(path, 'utf8');
    const [victim, slot] = [...bindings()][0]!;
    const intruder = Object.keys(userOf).find((a) => !bindings().has(a))!;
    try {
      writeFileSync(path, `${original}${intruder} ${slot}\n`);
      const r = await ask(userOf[intruder]!);
      expect(r.status).toBe(503);
      expect(r.body).not.toContain(victim);
      await waitFor(() => /request for another account than this slot serves/.test(t.front.httpd.errorLog()), 5_000, 'the refusal logged');
    } finally {
      writeFileSync(path, original);
    }
  }, 60_000);

  it('keeps a busy slot, and answers 503 with Retry-After when every slot stays busy', async () => {
    const busy = [...bindings().keys()];
    expect(busy).toHaveLength(SLOTS);
    const held = busy.map((account) => servedOwn(account, '/app/sleep?s=7'));
    await waitFor(() => inFlight() === SLOTS, 10_000, 'every slot serving its request');
    const waiting = Object.keys(userOf).find((a) => !busy.includes(a))!;
    const started = Date.now();
    const refused = await ask(userOf[waiting]!);
    expect(refused.status).toBe(503);
    expect(refused.headers.get('retry-after')).toBe('5');
    expect(Date.now() - started).toBeGreaterThanOrEqual(2_500);
    await Promise.all(held);
    // Once one is idle again, the account is served.
    await servedOwn(waiting);
  }, 60_000);

  it('serves an account again after its slot was killed mid-request', async () => {
    const [account, slot] = [...bindings()][0]!;
    const pending = ask(userOf[account]!, '/app/sleep?s=5');
    await waitFor(() => inFlight(slot) === 1, 10_000, 'the request in flight in its slot');
    for (const [title, pid] of slotPids()) if (title === `(wsgi:${slot})`) process.kill(pid, 'SIGKILL');
    // The request in flight is lost (or, when the kill came before the process had read it, served by the next
    // one); either way the account is served again, from its own account.
    await pending;
    await servedOwn(account);
  }, 60_000);

  it('after a graceful reload, every account is served from its own account again', async () => {
    const bound = bindings();
    await t.front.httpd.graceful();
    // The new binder kept the bindings the slots (forked again) serve already.
    await waitFor(() => /binder started .* bound=3/.test(t.front.httpd.errorLog()), 20_000, 'the new binder');
    expect(bindings()).toEqual(bound);
    for (const a of Object.keys(userOf)) await servedOwn(a);
  }, 120_000);
});
