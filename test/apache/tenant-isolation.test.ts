// One OS user per tenant, against a real Apache + mod_wsgi: each daemon group runs as its own run-as user
// (created through the CLI with --create-user), and code running as one tenant's uid can open neither another
// tenant's data nor anything plexer keeps for Apache (plexer.conf, the session key, the generated config,
// the logs, the dbm maps, the other daemons' sockets).
import { execFileSync, spawn } from 'node:child_process';
import { existsSync, mkdirSync, readdirSync, readFileSync, statSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { INSTALL } from '../helpers/render-options.js';
import { ensureSessionKeyFile } from '../../src/apache/session-key.js';
import { renderApacheConfig } from '../../src/apache/render/index.js';
import { cliOk, startTestFront, waitUntilServed, type TestFront } from '../helpers/front.js';
import { waitFor } from '../helpers/wait.js';

const TENANTS = [
  { group: 'isoalpha', user: 'plexer-iso-alpha', login: 'alice', password: 'alice-pw' },
  { group: 'isobeta', user: 'plexer-iso-beta', login: 'bob', password: 'bob-pw' },
] as const;

const exists = (user: string) => {
  try {
    execFileSync('getent', ['passwd', user], { stdio: 'ignore' });
    return true;
  } catch {
    return false;
  }
};
const ids = (user: string) => ({
  uid: Number(execFileSync('id', ['-u', user], { encoding: 'utf8' }).trim()),
  gid: Number(execFileSync('id', ['-g', user], { encoding: 'utf8' }).trim()),
});

// Only the accounts this run created are removed afterwards.
const created: string[] = [];
let t: TestFront;
let mapDir: string;
let sessionKey: string;

beforeAll(async () => {
  for (const x of TENANTS) if (!exists(x.user)) created.push(x.user);
  t = await startTestFront(async (cli) => {
    for (const x of TENANTS) {
      await cliOk(cli, ['group', 'add', x.group, '--settings', 'tenants.settings_generic', '--run-as', x.user, '--create-user']);
      await cliOk(cli, ['user', 'add', x.login, '--group', x.group, '--password-stdin'], `${x.password}\n`);
    }
  });
  for (const x of TENANTS) await waitUntilServed(t, x.login, x.password);
  await waitFor(() => existsSync(join(t.front.lockDir, 'refused.sock')), 15_000, 'plexer lockout to serve the refusal page');
  // The other files plexer writes for Apache, as the front end and `plexer sync` write them.
  sessionKey = ensureSessionKeyFile(join(t.front.apacheDir, 'session.key'));
  mapDir = join(t.stateDir, 'maps');
  mkdirSync(mapDir, { mode: 0o755 });
  await cliOk(t.cli, ['sync', '--once', '--dir', mapDir]);
}, 180_000);

afterAll(async () => {
  await t?.close();
  for (const user of created) execFileSync('userdel', [user], { stdio: 'ignore' });
});

// Runs a small Node program as UID:GID (no supplementary groups: libuv drops them, as mod_wsgi's initgroups()
// leaves a --create-user account with none) that tries each operation and reports the error code or "ok".
function probeAs(
  user: string,
  checks: Array<{ op: 'read' | 'list' | 'write' | 'connect'; path: string }>,
): Promise<Record<string, string>> {
  const program = `
    const fs = require('node:fs'); const net = require('node:net');
    const checks = ${JSON.stringify(checks)};
    (async () => {
      const out = {};
      for (const c of checks) {
        const key = c.op + ' ' + c.path;
        try {
          if (c.op === 'read') fs.closeSync(fs.openSync(c.path, 'r'));
          else if (c.op === 'list') fs.readdirSync(c.path);
          else if (c.op === 'write') fs.closeSync(fs.openSync(c.path, 'a'));
          else await new Promise((ok, ko) => { const s = net.connect(c.path, () => { s.destroy(); ok(); }); s.on('error', ko); });
          out[key] = 'ok';
        } catch (e) { out[key] = e.code || String(e); }
      }
      process.stdout.write(JSON.stringify(out));
    })();`;
  const { uid, gid } = ids(user);
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, ['-e', program], { uid, gid, cwd: '/', env: {} });
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (d) => (stdout += d));
    child.stderr.on('data', (d) => (stderr += d));
    child.on('error', reject);
    child.on('close', (code) => (code === 0 ? resolve(JSON.parse(stdout)) : reject(new Error(`probe exited ${code}: ${stderr}`))));
  });
}

// The mod_wsgi daemons of one group of OUR Apache, found by their display-name title.
function daemonsOf(group: string): Array<{ pid: number; uid: number; gid: number }> {
  const found = [];
  for (const entry of readdirSync('/proc')) {
    if (!/^\d+$/.test(entry)) continue;
    try {
      // mod_wsgi writes the title over argv[0] (space-padded); the other arguments stay.
      const title = readFileSync(`/proc/${entry}/cmdline`, 'utf8').split('\0')[0]!.trim();
      if (title !== `(wsgi:${group})`) continue;
      const status = readFileSync(`/proc/${entry}/status`, 'utf8');
      if (Number(/^PPid:\s+(\d+)/m.exec(status)![1]) !== t.front.httpd.pid) continue;
      const [uid] = /^Uid:\s+(\d+)\s+(\d+)\s+(\d+)\s+(\d+)/m.exec(status)!.slice(1).map(Number);
      const [gid] = /^Gid:\s+(\d+)\s+(\d+)\s+(\d+)\s+(\d+)/m.exec(status)!.slice(1).map(Number);
      // Real, effective, saved and file-system ids must all be the tenant's.
      expect(new Set(/^Uid:\s+(.*)$/m.exec(status)![1]!.trim().split(/\s+/)).size).toBe(1);
      found.push({ pid: Number(entry), uid: uid!, gid: gid! });
    } catch {
      // the process exited meanwhile
    }
  }
  return found;
}

describe('one OS user per tenant (real Apache)', () => {
  it('created each run-as account as a system user without a home or a login shell', () => {
    for (const x of TENANTS) {
      const [, , uid, , , home, shell] = execFileSync('getent', ['passwd', x.user], { encoding: 'utf8' }).trim().split(':');
      expect(Number(uid)).toBeLessThan(1000);
      expect(Number(uid)).toBeGreaterThan(0);
      expect([home, shell]).toEqual(['/nonexistent', '/usr/sbin/nologin']);
      expect(execFileSync('id', ['-Gn', x.user], { encoding: 'utf8' }).trim()).toBe(x.user);
    }
  });

  it('renders user= and group= of each run-as account on its WSGIDaemonProcess', () => {
    const config = readFileSync(t.front.httpd.configPath, 'utf8');
    for (const x of TENANTS) expect(config).toMatch(new RegExp(`^WSGIDaemonProcess ${x.group} .* user=${x.user} group=${x.user} `, 'm'));
  });

  it('serves each tenant from daemons running under its own uid and gid', async () => {
    for (const x of TENANTS) {
      const me = ids(x.user);
      const r = await t.get('/app/whoami', { user: x.login, password: x.password });
      expect(r.status).toBe(200);
      expect(r.json()).toMatchObject({ group: x.group, user: x.login, uid: me.uid, gid: me.gid, tenant_data: `tenant ${x.group}` });
      expect(r.json().database).toBe(join(t.front.apacheDir, 'data', x.group, `${x.group}.sqlite3`));
      const daemons = daemonsOf(x.group);
      expect(daemons.length).toBeGreaterThan(0);
      for (const d of daemons) expect([d.uid, d.gid]).toEqual([me.uid, me.gid]);
      expect(daemons.map((d) => d.pid)).toContain(r.json().pid);
    }
  });

  it('gives each tenant a 0700 data directory of its own under a root directory nobody can list', () => {
    const root = statSync(join(t.front.apacheDir, 'data'));
    expect([root.uid, root.mode & 0o777]).toEqual([0, 0o711]);
    for (const x of TENANTS) {
      const st = statSync(join(t.front.apacheDir, 'data', x.group));
      expect([st.uid, st.gid, st.mode & 0o777]).toEqual([ids(x.user).uid, ids(x.user).gid, 0o700]);
    }
  });

  it("keeps plexer's files closed to tenants: modes and owners", () => {
    const wwwData = ids('www-data').gid;
    const mode = (p: string) => {
      const st = statSync(p);
      return [st.uid, st.gid, st.mode & 0o777];
    };
    expect(mode(t.configPath)).toEqual([0, wwwData, 0o640]);
    expect(mode(sessionKey)).toEqual([0, 0, 0o600]);
    expect(mode(t.front.httpd.configPath)).toEqual([0, 0, 0o600]);
    expect(mode(join(t.front.apacheDir, 'error.log'))).toEqual([0, 0, 0o600]);
    expect(mode(join(t.front.apacheDir, 'access.log'))).toEqual([0, 0, 0o600]);
    // It names every failed login: made root's before Apache starts, whatever Apache's umask.
    expect(mode(join(t.front.apacheDir, 'login.log'))).toEqual([0, 0, 0o600]);
    for (const map of ['group.map', 'settings.map', 'backend.map']) expect(mode(join(mapDir, map))).toEqual([0, wwwData, 0o640]);
  });

  it("a process running as alpha's uid can open nothing of beta's nor anything plexer keeps for Apache", async () => {
    const [alpha, beta] = TENANTS;
    const betaDir = join(t.front.apacheDir, 'data', beta.group);
    const sockets = readdirSync(t.front.apacheDir)
      .filter((n) => n.endsWith('.sock'))
      .map((n) => join(t.front.apacheDir, n));
    expect(sockets.length).toBeGreaterThanOrEqual(2);
    const denied = [
      { op: 'read', path: join(betaDir, `${beta.group}.sqlite3`) },
      { op: 'write', path: join(betaDir, `${beta.group}.sqlite3`) },
      { op: 'list', path: betaDir },
      { op: 'write', path: join(betaDir, 'planted') },
      { op: 'list', path: join(t.front.apacheDir, 'data') },
      { op: 'list', path: t.front.apacheDir },
      { op: 'list', path: t.stateDir },
      { op: 'read', path: t.configPath },
      { op: 'read', path: sessionKey },
      { op: 'read', path: t.front.httpd.configPath },
      { op: 'read', path: join(t.front.apacheDir, 'error.log') },
      { op: 'read', path: join(t.front.apacheDir, 'access.log') },
      { op: 'read', path: join(mapDir, 'group.map') },
      { op: 'read', path: join(mapDir, 'settings.map') },
      { op: 'read', path: join(mapDir, 'backend.map') },
      // mod_wsgi gives the daemons' sockets to Apache's user, mode 0600: no tenant can talk to another's daemon.
      ...sockets.map((path) => ({ op: 'connect' as const, path })),
      // Nor feed plexer lockout refusals (locking others out), nor plant or remove lock files.
      { op: 'connect', path: join(t.front.lockDir, 'refused.sock') },
      { op: 'write', path: join(t.front.lockDir, 'planted') },
    ] as const;
    const result = await probeAs(alpha.user, [...denied]);
    expect(result).toEqual(Object.fromEntries(denied.map((c) => [`${c.op} ${c.path}`, 'EACCES'])));
    // The probe itself works: alpha reads its own database and the code.
    const own = await probeAs(alpha.user, [
      { op: 'read', path: join(t.front.apacheDir, 'data', alpha.group, `${alpha.group}.sqlite3`) },
      { op: 'read', path: join(t.front.runtime.pythonPath, 'tenants/settings_base.py') },
    ]);
    expect(Object.values(own)).toEqual(['ok', 'ok']);
  });

  it("beta's daemon is equally closed to alpha's data", async () => {
    const [alpha, beta] = TENANTS;
    const result = await probeAs(beta.user, [{ op: 'read', path: join(t.front.apacheDir, 'data', alpha.group, `${alpha.group}.sqlite3`) }]);
    expect(Object.values(result)).toEqual(['EACCES']);
  });
});

describe('rendering run-as', () => {
  const base = INSTALL;
  const daemonLine = (runAs: string | null | undefined) => {
    const config = renderApacheConfig({ ...base, accounts: [{ name: 't1', settingsModule: null, enabled: true, runAs }] });
    return /^WSGIDaemonProcess t1 .*$/m.exec(config)![0];
  };

  it("writes user= and group= always, the group defaulting to the user's own, never Apache's", () => {
    expect(daemonLine('tenant-1')).toMatch(/ user=tenant-1 group=tenant-1 /);
    expect(daemonLine('tenant-1:tenants')).toMatch(/ user=tenant-1 group=tenants /);
    expect(daemonLine(null)).toMatch(/ user=www-data group=www-data /);
    expect(daemonLine(undefined)).toMatch(/ user=www-data group=www-data /);
  });

  it('refuses root and anything that is not a run-as name', () => {
    for (const bad of ['root', 'root:x', 'x:root', 'a b', 'x\ny', 'Alice', 'a:b:c'])
      expect(() => daemonLine(bad), bad).toThrow(/invalid run-as/);
  });
});
