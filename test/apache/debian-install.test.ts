// The README's "Installing on a server", its block taken verbatim and run line by line, in order, as root: only
// apt-get and git clone are skipped (bin/setup and the checkout did those). It runs against a copy of Debian's
// /etc/apache2 and a PostgreSQL cluster of the test's own, which the block's own lines configure (roles,
// database, pg_ident.conf, pg_hba.conf, the reload). PLACES and SERVICES below are everything the test changes
// in those lines (apache/INSTALL.md, "How the block is tested", says the same). The block must end with
// `plexer doctor` exit 0, right after Apache's start, and alice and bob must be served as the README says.
import { execFileSync, spawnSync } from 'node:child_process';
import {
  chmodSync,
  chownSync,
  existsSync,
  mkdirSync,
  mkdtempSync,
  readFileSync,
  rmSync,
  statSync,
  symlinkSync,
  writeFileSync,
} from 'node:fs';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startPrivateCluster, type PrivateCluster } from '../../src/demo/private-cluster.js';
import { apacheTree, stopApacheTree } from '../../src/demo/tree.js';
import { freePort } from '../helpers/httpd.js';
import { REPO_ROOT } from '../helpers/plexer.js';
import { waitFor } from '../helpers/wait.js';

const README = readFileSync(join(REPO_ROOT, 'README.md'), 'utf8');
const INSTALL = README.slice(README.indexOf('## Installing on a server'));

// The first sh block of the section, continuation lines joined, comments (whole-line and trailing) dropped.
function installLines(): string[] {
  const block = /```sh\n([\s\S]*?)```/.exec(INSTALL)?.[1];
  if (!block) throw new Error('README: no sh block under "Installing on a server"');
  return block
    .replace(/\\\n\s*/g, '')
    .split('\n')
    .map((line) => line.replace(/\s+# .*$/, '').trim())
    .filter((line) => line !== '' && !line.startsWith('#'));
}

// Done by bin/setup and the checkout.
const SKIPPED = [/^apt-get /, /^git clone /];

const root = mkdtempSync('/tmp/pxdeb-');
const confDir = join(root, 'apache2');
const run = join(root, 'run');
const logs = join(root, 'log');
const plexerEtc = join(root, 'etc-plexer');
const pgEtc = join(root, 'etc-postgresql');
const createdUsers: string[] = [];
let cluster: PrivateCluster;
let port: number;
let apachePid: number | undefined;
// What each line of the block printed, by line as it was run.
const printed = new Map<string, string>();

// Where the block's paths and port point on a server, and where they point here: copies, and the cluster of the
// test's own (its socket directory stands for /var/run/postgresql; it listens on 5432 there, so the block's
// plexer.conf needs no port). Nothing else in a line is changed.
function places(): Array<[server: string, here: string]> {
  return [
    ['/opt/plexer', REPO_ROOT.replace(/\/$/, '')],
    ['/etc/apache2', confDir],
    ['/etc/plexer', plexerEtc],
    ['/var/lib/plexer', join(root, 'lib')],
    ['/etc/postgresql/15/main', pgEtc],
    ['/var/run/postgresql', cluster.host],
    ['127.0.0.1:8080', `127.0.0.1:${port}`],
  ];
}

// The lines that act on the system's services, or want a terminal, and what does the same here. A function
// replaces the whole line.
const SERVICES: Array<[RegExp, string | (() => Promise<void>)]> = [
  // psql's default socket directory, named so that PLACES moves it to the cluster's.
  [/^runuser -u postgres -- psql /, 'runuser -u postgres -- psql -h /var/run/postgresql '],
  [/^systemctl reload postgresql$/, reloadPostgres],
  // What systemd runs for it (apache2.service: Type=forking, ExecStart=apachectl start).
  [/^systemctl restart apache2$/, 'apache2ctl start'],
  // No terminal here: the password comes on stdin.
  [/( user add \S+ --group \S+)$/, '$1 --password-stdin'],
];

const env = () => ({
  PATH: '/usr/sbin:/usr/bin:/sbin:/bin',
  LANG: 'C.UTF-8',
  // apache2ctl, a2enmod, a2ensite, a2enconf and plexer's own defaults look there.
  APACHE_CONFDIR: confDir,
  // The block's commands read the default /etc/plexer/plexer.conf.
  PLEXER_CONFIG: join(plexerEtc, 'plexer.conf'),
});

// stdout and stderr together: apache2ctl -t says "Syntax OK" and its warnings on stderr.
function sh(line: string, input?: string): { code: number | null; out: string } {
  const r = spawnSync('/bin/sh', ['-c', line], { env: env(), input: input ?? '', encoding: 'utf8', cwd: '/' });
  return { code: r.status, out: `${r.stdout}${r.stderr}` };
}

function localize(line: string): string {
  let local = line;
  for (const [pattern, replacement] of SERVICES) if (typeof replacement === 'string') local = local.replace(pattern, replacement);
  for (const [server, here] of places()) local = local.replaceAll(server, here);
  return local;
}

const asPostgres = (sql: string) => sh(`runuser -u postgres -- psql -h ${cluster.host} -Atc "${sql}"`);

// `pg_reload_conf()` only signals the server, as `systemctl reload postgresql` does (pg_ctlcluster reload): the
// next line may connect before it has read the files again, so wait until a new session says it has.
async function reloadPostgres(): Promise<void> {
  const before = asPostgres('SELECT pg_conf_load_time()');
  expect(before.code, before.out).toBe(0);
  expect(asPostgres('SELECT pg_reload_conf()').out.trim()).toBe('t');
  await waitFor(() => asPostgres('SELECT pg_conf_load_time()').out !== before.out, 10_000, 'PostgreSQL to read its files again');
}

// Debian's own choice of enabled modules, configs and sites, whatever this host's /etc/apache2 has become (a
// server where plexer was installed by this very README has prefork and plexer's modules enabled): what apache2's
// postinst enables, plus the two modules whose packages enable themselves (bin/setup installs them).
const STOCK = {
  mods: 'access_compat alias auth_basic authn_core authn_file authz_core authz_host authz_user autoindex deflate dir env filter mime mpm_event negotiation reqtimeout setenvif status authnz_external wsgi',
  conf: 'charset localized-error-pages other-vhosts-access-log security serve-cgi-bin',
  sites: '000-default',
};
function resetToStock(dir: string): void {
  const relink = (kind: 'mods' | 'conf' | 'sites', suffixes: string[]) => {
    const enabled = join(dir, `${kind}-enabled`);
    rmSync(enabled, { recursive: true, force: true });
    mkdirSync(enabled);
    for (const name of STOCK[kind].split(' ')) {
      for (const suffix of suffixes) {
        if (existsSync(join(dir, `${kind}-available`, name + suffix)))
          symlinkSync(`../${kind}-available/${name}${suffix}`, join(enabled, name + suffix));
      }
    }
  };
  relink('mods', ['.load', '.conf']);
  relink('conf', ['.conf']);
  relink('sites', ['.conf']);
  rmSync(join(dir, 'sites-available', 'plexer.conf'), { force: true });
  rmSync(join(dir, 'conf-available', 'servername.conf'), { force: true });
}

// The authentication files of a fresh Debian 12 cluster (pg_createcluster 15 main), not this host's, which an
// earlier install may have edited: the superuser's line first, then initdb's with peer for the socket.
const STOCK_HBA = `# PostgreSQL Client Authentication Configuration File, as Debian's pg_createcluster writes it.

# DO NOT DISABLE!
# If you change this first entry you will need to make sure that the
# database superuser can access the database using some other method.
# Noninteractive access to all databases is required during automatic
# maintenance (custom daily cronjobs, replication, and similar tasks).
#
# Database administrative login by Unix domain socket
local   all             postgres                                peer

# TYPE  DATABASE        USER            ADDRESS                 METHOD

# "local" is for Unix domain socket connections only
local   all             all                                     peer
# IPv4 local connections:
host    all             all             127.0.0.1/32            scram-sha-256
# IPv6 local connections:
host    all             all             ::1/128                 scram-sha-256
# Allow replication connections from localhost, by a user with the
# replication privilege.
local   replication     all                                     peer
host    replication     all             127.0.0.1/32            scram-sha-256
host    replication     all             ::1/128                 scram-sha-256
`;
const STOCK_IDENT = `# PostgreSQL User Name Maps, as Debian's pg_createcluster writes it: none.

# MAPNAME       SYSTEM-USERNAME         PG-USERNAME
`;

beforeAll(async () => {
  port = await freePort();
  chmodSync(root, 0o711);
  execFileSync('cp', ['-a', '/etc/apache2', confDir]);
  resetToStock(confDir);
  // Not the system's run, lock and log directories, nor its port 80.
  const envvars = join(confDir, 'envvars');
  writeFileSync(
    envvars,
    readFileSync(envvars, 'utf8')
      .replace(/^export APACHE_PID_FILE=.*$/m, `export APACHE_PID_FILE=${run}/apache2.pid`)
      .replace(/^export APACHE_RUN_DIR=.*$/m, `export APACHE_RUN_DIR=${run}`)
      .replace(/^export APACHE_LOCK_DIR=.*$/m, `export APACHE_LOCK_DIR=${join(root, 'lock')}`)
      .replace(/^export APACHE_LOG_DIR=.*$/m, `export APACHE_LOG_DIR=${logs}`),
  );
  writeFileSync(join(confDir, 'ports.conf'), "# the test listens on its own port only (the site's Listen)\n");
  mkdirSync(logs);

  // Debian keeps a cluster's configuration apart from its data, owned by postgres (the files 0640).
  const postgres = { uid: Number(sh('id -u postgres').out), gid: Number(sh('id -g postgres').out) };
  mkdirSync(pgEtc, { mode: 0o755 });
  chownSync(pgEtc, postgres.uid, postgres.gid);
  const authFiles = { hba: join(pgEtc, 'pg_hba.conf'), ident: join(pgEtc, 'pg_ident.conf') };
  for (const [file, text] of [
    [authFiles.hba, STOCK_HBA],
    [authFiles.ident, STOCK_IDENT],
  ] as const) {
    writeFileSync(file, text, { mode: 0o640 });
    chownSync(file, postgres.uid, postgres.gid);
  }
  cluster = await startPrivateCluster({ dir: join(root, 'pg'), port: 5432, authFiles });

  for (const user of ['plexer-tenant1', 'plexer-tenant2']) if (sh(`id -u ${user}`).code !== 0) createdUsers.push(user);
}, 120_000);

afterAll(async () => {
  // Also when the block failed after starting Apache, before the test read the pid file.
  const pidFile = join(run, 'apache2.pid');
  apachePid ??= existsSync(pidFile) ? Number(readFileSync(pidFile, 'utf8').trim()) || undefined : undefined;
  if (apachePid !== undefined) await stopApacheTree(apachePid, join(logs, 'error.log'));
  await cluster?.stop();
  for (const user of createdUsers) sh(`userdel ${user}`);
  rmSync(root, { recursive: true, force: true });
}, 60_000);

// The first request the README gives after the block, and the answer it promises.
function firstRequest(): { user: string; url: string; answer: Record<string, string> } {
  const match = /ask as (\w+): `curl -u \1 (http:\/\/\S+)`[^`]*answers\s+`(\{[^`]*\})`/.exec(INSTALL);
  if (!match) throw new Error('README: no first request after the install block');
  const answer = Object.fromEntries([...match[3]!.matchAll(/"(\w+)": "([^"]*)"/g)].map((m) => [m[1]!, m[2]!]));
  return { user: match[1]!, url: localize(match[2]!), answer };
}

async function ask(user: string, url = firstRequest().url): Promise<{ status: number; body?: Record<string, unknown> }> {
  const response = await fetch(url, { headers: { authorization: `Basic ${Buffer.from(`${user}:${user}-pw`).toString('base64')}` } });
  const body = await response.text();
  return { status: response.status, ...(response.status === 200 ? { body: JSON.parse(body) as Record<string, unknown> } : {}) };
}

// The map's first lookups after a start may miss map_deadline_ms (our 403) while its connection is made.
const served = (user: string) =>
  waitFor(
    async () => {
      const answer = await ask(user);
      return answer.status === 200 ? answer : undefined;
    },
    20_000,
    `${user} served`,
  );

describe.sequential('Installing on a server (Debian layout)', () => {
  it('apache config --layout debian refuses a stock layout (event MPM, modules missing), naming the lines that fix it', () => {
    const r = sh(`node ${REPO_ROOT}/bin/plexer apache config --layout debian --out ${confDir}/sites-available/plexer.conf`);
    expect(r.code).toBe(1);
    expect(r.out).toMatch(/^\s+a2dismod -q mpm_event$/m);
    expect(r.out).toMatch(/^\s+a2enmod -q mpm_prefork .*\brewrite\b/m);
    expect(existsSync(join(confDir, 'sites-available/plexer.conf'))).toBe(false);
  });

  it('the README block runs as written, every line in order: PostgreSQL set up by its own lines, "Syntax OK" alone, Apache started without a warning, plexer doctor exit 0', async () => {
    const lines = installLines();
    expect(lines.some((line) => line.includes('--layout debian'))).toBe(true);
    expect(lines.at(-1)).toMatch(/ doctor$/);
    for (const line of lines) {
      if (SKIPPED.some((skip) => skip.test(line))) continue;
      const service = SERVICES.find(([pattern, replacement]) => typeof replacement === 'function' && pattern.test(line));
      if (service) {
        await (service[1] as () => Promise<void>)();
        continue;
      }
      const local = localize(line);
      const user = / user add (\S+)/.exec(local)?.[1];
      const result = sh(local, user ? `${user}-pw\n` : undefined);
      printed.set(line, result.out);
      expect(result.code, `${local}\n${result.out}`).toBe(0);
      if (local.startsWith('apache2ctl -t')) expect(result.out.trim(), 'apache2ctl -t').toBe('Syntax OK');
    }

    // The PostgreSQL lines did what the README says: no superuser, peer only, each OS user to its own role.
    expect(asPostgres("SELECT rolname, rolsuper, rolcreaterole FROM pg_roles WHERE rolname LIKE 'plexer%' ORDER BY 1").out.trim()).toBe(
      'plexer_admin|f|f\nplexer_helper|f|f',
    );
    expect(readFileSync(join(pgEtc, 'pg_hba.conf'), 'utf8')).toMatch(
      /^local plexer plexer_admin,plexer_helper peer map=plexer\nlocal\s+all\s+postgres\s+peer$/m,
    );

    const site = readFileSync(join(confDir, 'sites-available/plexer.conf'), 'utf8');
    for (const global of ['ServerRoot', 'PidFile', 'Mutex', 'User', 'Group', 'LoadModule', 'DefaultRuntimeDir', 'TypesConfig']) {
      expect(site, global).not.toMatch(new RegExp(`^${global}\\s`, 'm'));
    }
    expect(existsSync(join(confDir, 'mods-enabled/mpm_prefork.load'))).toBe(true);
    expect(existsSync(join(confDir, 'mods-enabled/mpm_event.load'))).toBe(false);
    // Written once Apache runs its MPM, after the helpers started (doctor found them).
    apachePid = await waitFor(
      () => {
        const pidFile = join(run, 'apache2.pid');
        const pid = existsSync(pidFile) ? Number(readFileSync(pidFile, 'utf8').trim()) : 0;
        return pid > 0 ? pid : undefined;
      },
      15_000,
      "Apache's pid file",
    );
  }, 180_000);

  it("plexer doctor, the block's last line, checked each role as the user that uses it", () => {
    const doctor = [...printed].find(([line]) => line.endsWith(' doctor'))?.[1] ?? '(doctor did not run)';
    const wwwData = execFileSync('id', ['-u', 'www-data'], { encoding: 'utf8' }).trim();
    expect(doctor).toMatch(new RegExp(`^ok +database: reachable; the helpers' role reads users \\(as uid ${wwwData}\\)`, 'm'));
    expect(doctor).toMatch(/^ok +maps: /m);
    // (A warning where /run is no tmpfs, as on some containers: every 401 then waits for a lock file on disk.)
    expect(doctor).toMatch(
      /^(ok +lockout: "plexer lockout" counts refused logins before their answer|warn +lockout: \S+ is not on tmpfs)/m,
    );
    expect(doctor).not.toMatch(/^FAIL/m);
  });

  it('serves alice and bob from their own groups, with the answer the README promises', async () => {
    const first = firstRequest();
    expect(first.user).toBe('alice');
    expect(first.answer).toMatchObject({ group: 'tenant1', user: 'alice' });
    const alice = await served('alice');
    expect(alice.body).toMatchObject(first.answer);
    expect((await served('bob')).body).toMatchObject({ group: 'tenant2', user: 'bob', settings: 'tenants.settings_generic' });

    // Logs where Debian's logrotate looks for them (APACHE_LOG_DIR/*.log), the access log with its time.
    expect(readFileSync(join(logs, 'plexer_access.log'), 'utf8')).toMatch(
      / alice \[\d{2}\/\w{3}\/\d{4}:[\d:]+ [+-]\d{4}\] 200 .* group=tenant1/,
    );
    const errorLog = readFileSync(join(logs, 'error.log'), 'utf8') + readFileSync(join(logs, 'plexer_error.log'), 'utf8');
    expect(errorLog.split('\n').filter((line) => /:(warn|error|crit|alert|emerg)\]|AH00558|AH01574|AH00534/.test(line))).toEqual([]);
    // (Checked before this: a refused login is logged as an error.) Its 401 page comes from plexer lockout, which
    // counted the refusal first (mod_proxy to /run/plexer/locks/refused.sock).
    const refused = await fetch(first.url, { headers: { authorization: `Basic ${Buffer.from('mallory:wrong').toString('base64')}` } });
    const body = await refused.text();
    expect(refused.status).toBe(401);
    expect(body).toContain('plexer-error:401');
    expect(body).not.toContain('Additionally');
  }, 60_000);

  it('group add prints the command that brings the new group in; pasted as printed, it works', async () => {
    // No --apache-config: the site is found where the block wrote it ($APACHE_CONFDIR).
    const added = sh(`node ${REPO_ROOT}/bin/plexer group add tenant3 --settings tenants.settings_generic`);
    expect(added.code, added.out).toBe(0);
    const pasted = added.out.split('\n')[1]?.trim() ?? '';
    expect(pasted).toMatch(/ apache config --layout debian .* && apache2ctl graceful$/);
    const carol = sh(`node ${REPO_ROOT}/bin/plexer user add carol --group tenant3 --password-stdin`, 'carol-pw\n');
    expect(carol.code, carol.out).toBe(0);
    const result = sh(pasted);
    expect(result.code, `${pasted}\n${result.out}`).toBe(0);
    await waitFor(
      async () => (await ask('carol')).body?.['group'] === 'tenant3',
      20_000,
      'carol served by tenant3 after the graceful reload',
    );
  }, 60_000);

  it('apache2ctl stop leaves no process of that Apache', async () => {
    expect(apachePid).toBeDefined();
    // This Apache's 401-page socket (the default lock directory is the host's: another run may use it too).
    const socket = '/run/plexer/locks/refused.sock';
    const ours = existsSync(socket) ? statSync(socket).ino : undefined;
    expect(ours).toBeDefined();
    const tree = apacheTree(apachePid!, join(logs, 'error.log'));
    expect(tree.length).toBeGreaterThan(3);
    expect(sh('apache2ctl stop').code).toBe(0);
    await waitFor(() => apacheTree(apachePid!, join(logs, 'error.log')).length === 0, 20_000, 'every process of the Apache to exit');
    apachePid = undefined;
    // The 401 page's socket goes with its logger when nothing took its place.
    expect(existsSync(socket) ? statSync(socket).ino : undefined).not.toBe(ours);
  }, 60_000);
});
