// plexer group add/set --run-as USER[:GROUP] [--create-user] | --no-run-as, and plexer apache config with
// run-as groups: real useradd/groupadd on this machine, a real store.
import { execFileSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, statSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { freshStore, runPlexer, type TestStore } from '../helpers/plexer.js';

const U1 = 'plexer-cli-t1';
const U2 = 'plexer-cli-t2';
const G2 = 'plexer-cli-g2';
const IN_WWW = 'plexer-cli-www';
const MISSING = 'plexer-cli-missing';

const getent = (db: 'passwd' | 'group', key: string): string[] | null => {
  try {
    return execFileSync('getent', [db, key], { encoding: 'utf8' }).trim().split(':');
  } catch {
    return null;
  }
};

let store: TestStore;
const cli = (args: string[]) => runPlexer(args, { configPath: store.configPath });
// Removed afterwards only if this run created them.
const createdUsers: string[] = [];
const createdGroups: string[] = [];
let outDir: string;

beforeAll(async () => {
  store = await freshStore();
  for (const u of [U1, U2, IN_WWW]) if (!getent('passwd', u)) createdUsers.push(u);
  for (const g of [U1, U2, G2, IN_WWW]) if (!getent('group', g)) createdGroups.push(g);
  if (createdUsers.includes(IN_WWW)) {
    execFileSync('useradd', [
      '--system',
      '--user-group',
      '--no-create-home',
      '--home-dir',
      '/nonexistent',
      '--shell',
      '/usr/sbin/nologin',
      '--groups',
      'www-data',
      IN_WWW,
    ]);
  }
  outDir = mkdtempSync(join(tmpdir(), 'plexer-cli-run-as-'));
});

afterAll(async () => {
  await store?.close();
  for (const u of createdUsers) execFileSync('userdel', [u], { stdio: 'ignore' });
  for (const g of createdGroups) if (getent('group', g)) execFileSync('groupdel', [g], { stdio: 'ignore' });
  if (outDir) rmSync(outDir, { recursive: true, force: true });
});

const listed = async () => JSON.parse((await cli(['group', 'list', '--json'])).stdout) as Array<{ name: string; run_as: string | null }>;

describe('plexer group --run-as', () => {
  it("refuses root, Apache's user, system accounts, members of www-data and bad names, changing nothing", async () => {
    const cases: Array<[string[], number, RegExp]> = [
      [['--run-as', 'root'], 1, /a tenant never runs as root/],
      [['--run-as', 'root', '--create-user'], 1, /root/],
      [['--run-as', 'www-data'], 1, /Apache's own user/],
      [['--run-as', 'www-data', '--create-user'], 1, /www-data/],
      [['--run-as', 'daemon'], 1, /system account other services share/],
      [['--run-as', 'nobody'], 1, /system account/],
      [['--run-as', `${U1}:www-data`, '--create-user'], 1, /"www-data": a tenant needs a user and group of its own/],
      [['--run-as', `${U1}:root`, '--create-user'], 1, /"root": a tenant needs a user and group of its own/],
      [['--run-as', `${U1}:daemon`, '--create-user'], 1, /group daemon \(gid 1\) is shared with the system or Apache/],
      [['--run-as', IN_WWW], 1, /in group www-data .* Apache \(plexer\.conf, the maps\)/],
      [
        ['--run-as', MISSING],
        1,
        /"plexer-cli-missing" does not exist on this machine: add --create-user, or create it with useradd --system/,
      ],
      [['--run-as', 'Bad-Name'], 2, /invalid run-as "Bad-Name"/],
      [['--run-as', 'a:b:c'], 2, /invalid run-as/],
      [['--create-user'], 2, /--create-user needs --run-as/],
    ];
    for (const [options, code, message] of cases) {
      const r = await cli(['group', 'add', 'tenant1', ...options]);
      expect([r.code, r.stderr], options.join(' ')).toEqual([code, expect.stringMatching(message)]);
    }
    expect(await listed()).toEqual([]);
    // A refused account is never created as a side effect.
    expect(getent('passwd', MISSING)).toBeNull();
    if (createdUsers.includes(U1)) expect(getent('passwd', U1)).toBeNull();
  });

  it('--create-user makes a system user with its own group, no home and no shell; group list shows it', async () => {
    const r = await cli(['group', 'add', 'tenant1', '--settings', 'tenants.settings_generic', '--run-as', U1, '--create-user']);
    expect(r.code, r.stderr).toBe(0);
    const [, , uid, gid, , home, shell] = getent('passwd', U1)!;
    expect(Number(uid)).toBeGreaterThan(0);
    expect(Number(uid)).toBeLessThan(1000);
    expect(getent('group', U1)![2]).toBe(gid);
    expect([home, shell]).toEqual(['/nonexistent', '/usr/sbin/nologin']);
    expect(execFileSync('id', ['-Gn', U1], { encoding: 'utf8' }).trim()).toBe(U1);
    expect(await listed()).toMatchObject([{ name: 'tenant1', run_as: U1 }]);
    expect((await cli(['group', 'list'])).stdout).toMatch(new RegExp(`^NAME .*RUN AS\\s*\\ntenant1 .*${U1}\\s*$`, 'm'));
    // Again: the existing account is reused, not an error.
    expect((await cli(['group', 'add', 'tenant9', '--run-as', U1, '--create-user'])).stderr).toMatch(/already runs another daemon group/);
  });

  it('USER:GROUP creates a separate group; no two daemon groups share a user', async () => {
    const r = await cli(['group', 'add', 'tenant2', '--run-as', `${U2}:${G2}`, '--create-user']);
    expect(r.code, r.stderr).toBe(0);
    expect(execFileSync('id', ['-gn', U2], { encoding: 'utf8' }).trim()).toBe(G2);
    const shared = await cli(['group', 'add', 'tenant3', '--run-as', U2]);
    expect([shared.code, shared.stderr]).toEqual([
      1,
      expect.stringMatching(/daemon group "tenant3": its run-as user already runs another daemon group/),
    ]);
    // With "USER" alone for an existing user, the stored value names the user's real primary group.
    expect((await cli(['group', 'set', 'tenant2', '--no-run-as'])).code).toBe(0);
    expect((await cli(['group', 'set', 'tenant2', '--run-as', U2])).code).toBe(0);
    expect((await listed()).find((g) => g.name === 'tenant2')!.run_as).toBe(`${U2}:${G2}`);
  });

  it('set --no-run-as and --run-as; the two exclude each other', async () => {
    expect((await cli(['group', 'set', 'tenant1', '--run-as', U1, '--no-run-as'])).code).toBe(2);
    expect((await cli(['group', 'set', 'tenant1', '--no-run-as'])).code).toBe(0);
    expect((await listed()).find((g) => g.name === 'tenant1')!.run_as).toBeNull();
    expect((await cli(['group', 'set', 'tenant1', '--run-as', U1])).code).toBe(0);
    expect((await listed()).find((g) => g.name === 'tenant1')!.run_as).toBe(U1);
  });

  it('apache config renders user=/group=, writes --out 0600 and creates the 0700 data directories', async () => {
    const out = join(outDir, 'plexer-site.conf');
    const stateDir = join(outDir, 'state');
    const r = await cli(['apache', 'config', '--out', out, '--state-dir', stateDir]);
    expect(r.code, r.stderr).toBe(0);
    const config = readFileSync(out, 'utf8');
    expect(config).toMatch(new RegExp(`^WSGIDaemonProcess tenant1 .* user=${U1} group=${U1} `, 'm'));
    expect(config).toMatch(new RegExp(`^WSGIDaemonProcess tenant2 .* user=${U2} group=${G2} `, 'm'));
    expect(config).toMatch(/SetEnv PLEXER_DATA_ROOT .*\/state\/data$/m);
    const st = statSync(out);
    expect([st.uid, st.mode & 0o777]).toEqual([0, 0o600]);
    expect(statSync(join(stateDir, 'data')).mode & 0o777).toBe(0o711);
    // The logs it names exist before Apache starts, root's alone, so Apache's umask cannot open them to tenants.
    for (const log of ['error.log', 'access.log', 'login.log']) {
      const made = statSync(join(stateDir, log));
      expect([log, made.uid, made.mode & 0o777]).toEqual([log, 0, 0o600]);
    }
    for (const [group, user] of [
      ['tenant1', U1],
      ['tenant2', U2],
    ] as const) {
      const d = statSync(join(stateDir, 'data', group));
      expect([d.uid, d.mode & 0o777]).toEqual([Number(getent('passwd', user)![2]), 0o700]);
    }
  });

  it('apache config looks routes up with one map by default, two with --two-maps', async () => {
    const one = await cli(['apache', 'config', '--state-dir', join(outDir, 'state1')]);
    expect(one.code, one.stderr).toBe(0);
    expect(one.stdout).toMatch(/RewriteMap plexer_route "prg:.* map route /);
    expect(one.stdout).not.toMatch(/map group|map settings/);
    expect(one.stdout).toMatch(/watchdog --maps 1 /);
    const two = await cli(['apache', 'config', '--two-maps', '--state-dir', join(outDir, 'state2')]);
    expect(two.code, two.stderr).toBe(0);
    expect(two.stdout).toMatch(/RewriteMap plexer_group "prg:.* map group /);
    expect(two.stdout).toMatch(/RewriteMap plexer_settings "prg:.* map settings /);
    expect(two.stdout).toMatch(/watchdog --maps 2 /);
  });

  it('apache config refuses a run-as account that does not exist on this machine, naming the fix', async () => {
    await store.sql.query(`INSERT INTO daemon_groups (name, run_as) VALUES ('tenant4', $1)`, [MISSING]);
    const r = await cli(['apache', 'config']);
    expect([r.code, r.stderr]).toEqual([
      1,
      expect.stringMatching(
        /daemon group tenant4 runs as "plexer-cli-missing", which does not exist on this machine: create it \(plexer group set tenant4 --run-as plexer-cli-missing --create-user\)/,
      ),
    ]);
  });

  it('apache config refuses a Python path or WSGI script others than root may change (their code would run before the seal)', async () => {
    // A runtime whose example project a tenant could write a .pth file into.
    const root = mkdtempSync(join(tmpdir(), 'plexer-rt-'));
    try {
      for (const dir of ['apache/example', 'apache/wsgi', 'apache/errors']) execFileSync('mkdir', ['-p', join(root, dir)]);
      execFileSync('cp', [join(process.cwd(), 'apache/wsgi/plexer.wsgi'), join(root, 'apache/wsgi/')]);
      execFileSync('chmod', ['-R', 'go-w', root]);
      execFileSync('chmod', ['777', join(root, 'apache/example')]);
      const r = await cli(['apache', 'config', '--runtime-root', root]);
      expect(r.code).toBe(1);
      expect(r.stderr).toContain(`${join(root, 'apache/example')} may be changed by others than root (owner uid 0, mode 777)`);
      execFileSync('chmod', ['755', join(root, 'apache/example')]);
      execFileSync('chown', ['65534', join(root, 'apache/wsgi/plexer.wsgi')]);
      const owned = await cli(['apache', 'config', '--runtime-root', root]);
      expect(owned.code).toBe(1);
      expect(owned.stderr).toContain('plexer.wsgi may be changed by others than root (owner uid 65534');
    } finally {
      rmSync(root, { recursive: true, force: true });
    }
  });
});
