// Tenant code inside a real mod_wsgi daemon attacks what the daemon inherited from Apache's parent (issue
// "walls"): every mod_wsgi daemon is forked from the root parent without exec. Before plexer.wsgi sealed them,
// a daemon held the watchdog's and plexer lockout's pipes (a forged "desync" reloaded Apache, forged
// "bob ADDRESS" lines locked bob out), both pipes of the prg: map (its answers could be read and stolen), the
// rewrite-map lock (holding it hung every mapped request), the access and login logs, and the login cache's
// shared memory read-write (an entry written there logs anyone in). The attacker here is a tenant under its
// own --run-as account whose Django view tries all of that (test/fixtures/tenant-attack/attack_urls.py).
import { execFileSync } from 'node:child_process';
import { chmodSync, copyFileSync, cpSync, existsSync, mkdtempSync, readdirSync, readFileSync, readlinkSync, rmSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { PACKAGE_ROOT } from '../../src/apache/install-paths.js';
import { lockoutProcesses, mapProcesses, watchdogProcesses } from '../helpers/apache-procs.js';
import { cliOk, startTestFront, waitUntilServed, whoamiWithin, type TestFront } from '../helpers/front.js';
import { waitFor } from '../helpers/wait.js';

const ATTACKER = { group: 'evil', runAs: 'plexer-evil', login: 'mallory', password: 'mallory-pw' };

interface AttackReport {
  pid: number;
  descriptors: Record<string, string>;
  wrote: number[];
  read: Record<string, string>;
  locked: number[];
  shared: Array<{ size: number; login_cache: boolean }>;
}

let t: TestFront;
let project: string;
const createdUsers: string[] = [];

beforeAll(async () => {
  // The example project with the attacker's settings and views added, readable by every tenant.
  project = mkdtempSync('/tmp/pxa-');
  cpSync(join(PACKAGE_ROOT, 'apache/example'), project, { recursive: true });
  for (const file of ['settings_attack.py', 'attack_urls.py'])
    copyFileSync(join(PACKAGE_ROOT, 'test/fixtures/tenant-attack', file), join(project, 'tenants', file));
  execFileSync('chmod', ['-R', 'a+rX', project]);
  chmodSync(project, 0o755);
  try {
    execFileSync('getent', ['passwd', ATTACKER.runAs], { stdio: 'ignore' });
  } catch {
    createdUsers.push(ATTACKER.runAs);
  }
  t = await startTestFront(
    async (cli) => {
      await cliOk(cli, ['group', 'add', 'good', '--settings', 'tenants.settings_generic']);
      await cliOk(cli, ['user', 'add', 'alice', '--group', 'good', '--password-stdin'], 'alice-pw\n');
      await cliOk(cli, ['user', 'add', 'bob', '--group', 'good', '--password-stdin'], 'bob-pw\n');
      await cliOk(cli, [
        'group',
        'add',
        ATTACKER.group,
        '--settings',
        'tenants.settings_attack',
        '--run-as',
        ATTACKER.runAs,
        '--create-user',
      ]);
      await cliOk(cli, ['user', 'add', ATTACKER.login, '--group', ATTACKER.group, '--password-stdin'], `${ATTACKER.password}\n`);
    },
    { front: { extra: { pythonPath: project } } },
  );
  // alice is logged in (her password is in the login cache) before the attacker's daemon ever runs code.
  await waitUntilServed(t, 'alice', 'alice-pw');
  await waitUntilServed(t, 'bob', 'bob-pw');
}, 180_000);

afterAll(async () => {
  await t?.close();
  for (const user of createdUsers) execFileSync('userdel', [user], { stdio: 'ignore' });
  if (project) rmSync(project, { recursive: true, force: true });
});

// Pipe or socket inodes ("pipe:[N]", "socket:[N]") a process holds, read as root from outside it.
function inodes(pid: number, kind: 'pipe' | 'socket'): Set<string> {
  const found = new Set<string>();
  for (const fd of readdirSync(`/proc/${pid}/fd`)) {
    try {
      const target = readlinkSync(`/proc/${pid}/fd/${fd}`);
      if (target.startsWith(`${kind}:`)) found.add(target);
    } catch {
      // closed meanwhile
    }
  }
  return found;
}

async function attack(): Promise<AttackReport> {
  const r = await t.get('/app/attack', { user: ATTACKER.login, password: ATTACKER.password, fresh: true });
  expect(r.status, r.body).toBe(200);
  return r.json() as AttackReport;
}

describe("tenant code holds none of Apache's plumbing (real Apache, a tenant's own daemon)", () => {
  let report: AttackReport;
  let apachePid: number;

  beforeAll(async () => {
    apachePid = t.front.httpd.pid;
    report = await attack();
    console.log(`attacker's daemon ${report.pid} held: ${JSON.stringify(report.descriptors)}`);
    console.log(`wrote to ${JSON.stringify(report.wrote)}, read ${JSON.stringify(report.read)}, locked ${JSON.stringify(report.locked)}`);
    console.log(`shared memory: ${JSON.stringify(report.shared)}`);
  }, 60_000);

  it("shares no pipe with Apache's parent, its workers or any helper", () => {
    const apacheSide = new Set<string>();
    for (const pid of [apachePid, ...mapProcesses(apachePid, 'route'), ...lockoutProcesses(apachePid), ...watchdogProcesses(apachePid)])
      for (const inode of inodes(pid, 'pipe')) apacheSide.add(inode);
    expect(apacheSide.size).toBeGreaterThan(4);
    const held = Object.values(report.descriptors).filter((target) => target.startsWith('pipe:'));
    expect(held.filter((inode) => apacheSide.has(inode))).toEqual([]);
  });

  it("holds no log but the error log, no lock file, and of the parent's sockets only its own listener", () => {
    const files = Object.entries(report.descriptors)
      .filter(([fd, target]) => Number(fd) > 2 && target.startsWith('/') && target !== '/dev/null')
      .map(([, target]) => target);
    expect(files.filter((f) => !f.endsWith('error.log'))).toEqual([]);
    const parentSockets = inodes(apachePid, 'socket');
    expect(Object.values(report.descriptors).filter((target) => parentSockets.has(target))).toHaveLength(1);
    expect(report.locked).toEqual([]);
  });

  it('has no login cache nor scoreboard mapped: nothing it writes can log anyone in or steer Apache', () => {
    expect(report.shared.filter((s) => s.login_cache)).toEqual([]);
    // Nor the scoreboard: no shared segment of Apache's at all (through the scoreboard, tenant code could make
    // the root parent signal any process of its group at a graceful restart, or kill its workers).
    expect(report.shared).toEqual([]);
  });

  it('read no map answer, and a forged "bob" lookup stole nothing: every user is routed to their own group', async () => {
    expect(report.read).toEqual({});
    for (let i = 0; i < 20; i++) {
      const alice = await whoamiWithin(t, 'alice', 5_000);
      expect(alice).toMatchObject({ status: 200, group: 'good' });
    }
  });

  it('locked nobody out: the forged failures never reached the store, bob still logs in', async () => {
    // One real wrong password after the attack: plexer lockout takes lines in order, so once the store has it,
    // any forged line written before it would be there too.
    expect((await t.get('/app/whoami', { user: 'bob', password: 'wrong', fresh: true })).status).toBe(401);
    await waitFor(
      async () => (await t.store.sql.query(`SELECT 1 FROM login_failures WHERE subject = 'pair:bob/127.0.0.1'`)).rowCount,
      10_000,
      "bob's real failure in the store",
    );
    const forged = await t.store.sql.query(`SELECT subject FROM login_failures WHERE subject LIKE '%198.51.100.%'`);
    expect(forged.rows).toEqual([]);
    expect(existsSync(join(t.front.lockDir, 'user', 'bob'))).toBe(false);
    expect((await whoamiWithin(t, 'bob', 5_000)).status).toBe(200);
  });

  it('the forged "desync" reached no watchdog: it reported nothing and Apache was not reloaded', async () => {
    // The watchdog logs PLX0905 the moment a desync line arrives; the reload would follow 10 s later.
    expect(t.front.httpd.errorLog()).not.toMatch(/PLX0905/);
    expect(t.front.httpd.pid).toBe(apachePid);
  });

  it('the daemon that replaces the attacker is sealed too (mod_wsgi re-forks from the same parent)', async () => {
    execFileSync('kill', ['-INT', String(report.pid)]);
    const again = await waitFor(
      async () => {
        const r = await t.get('/app/attack', { user: ATTACKER.login, password: ATTACKER.password, fresh: true });
        return r.status === 200 && (r.json() as AttackReport).pid !== report.pid ? (r.json() as AttackReport) : null;
      },
      20_000,
      'a new attacker daemon',
      200,
    );
    expect(again.shared.filter((s) => s.login_cache)).toEqual([]);
    expect(Object.values(again.descriptors).filter((f) => /access\.log|login\.log/.test(f))).toEqual([]);
    expect(t.front.httpd.pid).toBe(apachePid);
  }, 40_000);
});

describe('after a graceful reload (every daemon forked anew by the new generation)', () => {
  it('the new daemons are sealed too and serve', async () => {
    const before = (await attack()).pid;
    await t.front.httpd.graceful();
    const after = await waitFor(
      async () => {
        const r = await t.get('/app/attack', { user: ATTACKER.login, password: ATTACKER.password, fresh: true });
        return r.status === 200 && (r.json() as AttackReport).pid !== before ? (r.json() as AttackReport) : null;
      },
      20_000,
      'a daemon of the new generation',
      200,
    );
    expect(after.shared).toEqual([]);
    expect(after.read).toEqual({});
    expect(Object.values(after.descriptors).filter((f) => /access\.log|login\.log/.test(f))).toEqual([]);
    expect((await whoamiWithin(t, 'alice', 5_000)).status).toBe(200);
  }, 60_000);
});

describe("a tenant's own 401s (real Apache)", () => {
  it('never count as failed logins: 15 of them lock nobody out and reach neither the store nor the login log', async () => {
    for (let i = 0; i < 15; i++) {
      const r = await t.get('/app/deny', { user: ATTACKER.login, password: ATTACKER.password, fresh: true });
      expect(r.status).toBe(401);
      expect(r.body).toBe('token required\n');
    }
    // A real failure afterwards, so the logger has certainly taken every line before it.
    expect((await t.get('/app/whoami', { user: 'alice', password: 'wrong', fresh: true })).status).toBe(401);
    await waitFor(
      async () => (await t.store.sql.query(`SELECT 1 FROM login_failures WHERE subject = 'pair:alice/127.0.0.1'`)).rowCount,
      10_000,
      "alice's real failure in the store",
    );
    // Failures only: the rows saying where a user has logged in (known:…) are no count.
    const counted = await t.store.sql.query(
      `SELECT subject FROM login_failures WHERE subject LIKE '%${ATTACKER.login}%' AND NOT starts_with(subject, 'known:')`,
    );
    expect(counted.rows).toEqual([]);
    expect(readFileSync(join(t.front.apacheDir, 'login.log'), 'utf8')).not.toContain(ATTACKER.login);
    expect((await t.get('/app/attack', { user: ATTACKER.login, password: ATTACKER.password, fresh: true })).status).toBe(200);
  });
});
