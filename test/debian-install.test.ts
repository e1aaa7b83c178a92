// The README's "Installing on a server", run line by line against a copy of Debian's /etc/apache2 (see the
// paragraph under that block for what is moved or skipped, and why): the site must pass `apache2ctl -t` with
// no warning, start under Debian's own apache2ctl and route each user to their own daemon group.
import { execFileSync, spawnSync } from 'node:child_process';
import { chmodSync, existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, statSync, symlinkSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { apacheTree, stopApacheTree } from '../src/demo/tree.js';
import { freePort } from './helpers/httpd.js';
import { formatConfig } from '../src/config.js';
import { connectionValues, freshStore, REPO_ROOT, type TestStore } from './helpers/plexer.js';
import { waitFor } from './helpers/wait.js';

const README = readFileSync(join(REPO_ROOT, 'README.md'), 'utf8');

// The first sh block of the section, continuation lines joined, comments (whole-line and trailing) dropped.
function installLines(): string[] {
  const section = README.slice(README.indexOf('## Installing on a server'));
  const block = /```sh\n([\s\S]*?)```/.exec(section)?.[1];
  if (!block) throw new Error('README: no sh block under "Installing on a server"');
  return block
    .replace(/\\\n\s*/g, '')
    .split('\n')
    .map((line) => line.replace(/\s+# .*$/, '').trim())
    .filter((line) => line !== '' && !line.startsWith('#'));
}

// Done by bin/setup and the checkout, or by the test database's own setup (like every other test's).
const SKIPPED = [
  /^apt-get /,
  /^git clone /,
  /^runuser -u postgres /,
  /\/etc\/postgresql\//,
  /^systemctl reload postgresql$/,
  / db migrate /,
  // Run once Apache answers (its own test below): right after `apache2ctl start` its maps may not have started.
  / doctor$/,
];

const root = mkdtempSync('/tmp/pxdeb-');
const confDir = join(root, 'apache2');
const run = join(root, 'run');
const logs = join(root, 'log');
const plexerEtc = join(root, 'etc-plexer');
const createdUsers: string[] = [];
let store: TestStore;
let port: number;
let apachePid: number | undefined;

const env = () => ({
  PATH: '/usr/sbin:/usr/bin:/sbin:/bin',
  LANG: 'C.UTF-8',
  APACHE_CONFDIR: confDir,
  PLEXER_CONFIG: join(plexerEtc, 'plexer.conf'),
});

// stdout and stderr together: apache2ctl -t says "Syntax OK" and its warnings on stderr.
function sh(line: string, input?: string): { code: number | null; out: string } {
  const r = spawnSync('/bin/sh', ['-c', line], { env: env(), input: input ?? '', encoding: 'utf8' });
  return { code: r.status, out: `${r.stdout}${r.stderr}` };
}

// Where the README's paths and port point on a real server, and where they point here.
function localize(line: string): string {
  return (
    line
      .replaceAll('/opt/plexer', REPO_ROOT.replace(/\/$/, ''))
      .replaceAll('/etc/apache2', confDir)
      .replaceAll('/etc/plexer', plexerEtc)
      .replaceAll('/var/lib/plexer', join(root, 'lib'))
      .replaceAll('127.0.0.1:8080', `127.0.0.1:${port}`)
      .replace(/^systemctl restart apache2$/, 'apache2ctl start')
      // No terminal here: the password comes on stdin.
      .replace(/( user add \S+ --group \S+)/, '$1 --password-stdin')
  );
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

beforeAll(async () => {
  store = await freshStore();
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
  for (const user of ['plexer-tenant1', 'plexer-tenant2']) if (sh(`id -u ${user}`).code !== 0) createdUsers.push(user);
}, 60_000);

afterAll(async () => {
  if (apachePid !== undefined) await stopApacheTree(apachePid, join(logs, 'error.log'));
  await store?.close();
  for (const user of createdUsers) sh(`userdel ${user}`);
  rmSync(root, { recursive: true, force: true });
}, 60_000);

async function whoami(user: string): Promise<{ status: number; group?: string }> {
  const response = await fetch(`http://127.0.0.1:${port}/app/whoami`, {
    headers: { authorization: `Basic ${Buffer.from(`${user}:${user}-pw`).toString('base64')}` },
  });
  const body = await response.text();
  return { status: response.status, ...(response.status === 200 ? (JSON.parse(body) as { group: string }) : {}) };
}

describe.sequential('Installing on a server (Debian layout)', () => {
  it('apache config --layout debian refuses a stock layout (event MPM, modules missing), naming the lines that fix it', () => {
    const r = sh(`node ${REPO_ROOT}/bin/plexer apache config --layout debian --out ${confDir}/sites-available/plexer.conf`);
    expect(r.code, r.out).toBe(1);
    expect(r.out).toMatch(/^\s+a2dismod -q mpm_event$/m);
    expect(r.out).toMatch(/^\s+a2enmod -q mpm_prefork .*\brewrite\b/m);
    expect(existsSync(join(confDir, 'sites-available/plexer.conf'))).toBe(false);
  });

  it('the README block runs as written: apache2ctl -t says only "Syntax OK", Apache starts without a warning and routes each user to their group', async () => {
    const lines = installLines();
    expect(lines.some((line) => line.includes('--layout debian'))).toBe(true);
    for (const line of lines) {
      if (SKIPPED.some((skip) => skip.test(line))) continue;
      const local = localize(line);
      const user = / user add (\S+)/.exec(local)?.[1];
      const result = sh(local, user ? `${user}-pw\n` : undefined);
      expect(result.code, `${local}\n${result.out}`).toBe(0);
      if (local.startsWith('apache2ctl -t')) expect(result.out.trim(), 'apache2ctl -t').toBe('Syntax OK');
      // "then edit it": what an operator writes into the empty file, here the test database's connection.
      if (local.includes(`/dev/null ${plexerEtc}/plexer.conf`)) {
        writeFileSync(
          join(plexerEtc, 'plexer.conf'),
          formatConfig({ ...connectionValues(store.db.url), bcrypt_cost: 4, map_deadline_ms: 1000 }),
        );
      }
    }

    const site = readFileSync(join(confDir, 'sites-available/plexer.conf'), 'utf8');
    for (const global of ['ServerRoot', 'PidFile', 'Mutex', 'User', 'Group', 'LoadModule', 'DefaultRuntimeDir', 'TypesConfig']) {
      expect(site, global).not.toMatch(new RegExp(`^${global}\\s`, 'm'));
    }
    expect(existsSync(join(confDir, 'mods-enabled/mpm_prefork.load'))).toBe(true);
    expect(existsSync(join(confDir, 'mods-enabled/mpm_event.load'))).toBe(false);

    apachePid = await waitFor(
      () => {
        const pidFile = join(run, 'apache2.pid');
        const pid = existsSync(pidFile) ? Number(readFileSync(pidFile, 'utf8').trim()) : 0;
        return pid > 0 ? pid : undefined;
      },
      15_000,
      "Apache's pid file",
    );
    const alice = await waitFor(async () => ((await whoami('alice')).group ? whoami('alice') : undefined), 20_000, 'alice served');
    expect(alice).toMatchObject({ status: 200, group: 'tenant1' });
    expect(await whoami('bob')).toMatchObject({ status: 200, group: 'tenant2' });

    // Logs where Debian's logrotate looks for them (APACHE_LOG_DIR/*.log), the access log with its time.
    expect(readFileSync(join(logs, 'plexer_access.log'), 'utf8')).toMatch(
      / alice \[\d{2}\/\w{3}\/\d{4}:[\d:]+ [+-]\d{4}\] 200 .* group=tenant1/,
    );
    const errorLog = readFileSync(join(logs, 'error.log'), 'utf8') + readFileSync(join(logs, 'plexer_error.log'), 'utf8');
    expect(errorLog.split('\n').filter((line) => /:(warn|error|crit|alert|emerg)\]|AH00558|AH01574|AH00534/.test(line))).toEqual([]);
    // (Checked before this: a refused login is logged as an error.) Its 401 page comes from plexer lockout, which
    // counted the refusal first (mod_proxy to /run/plexer/locks/refused.sock; the logger may still be starting).
    await waitFor(
      async () => {
        const refused = await fetch(`http://127.0.0.1:${port}/app/whoami`, {
          headers: { authorization: `Basic ${Buffer.from('mallory:wrong').toString('base64')}` },
        });
        const body = await refused.text();
        expect(refused.status).toBe(401);
        return body.includes('plexer-error:401') && !body.includes('Additionally');
      },
      15_000,
      'the 401 page served by plexer lockout',
    );
  }, 180_000);

  it('plexer doctor says the install works: exit 0, each role checked as the user that uses it', () => {
    const doctor = sh(`node ${REPO_ROOT}/bin/plexer doctor --apache-config ${join(confDir, 'sites-available/plexer.conf')}`);
    console.log(doctor.out);
    expect(doctor.code, doctor.out).toBe(0);
    expect(doctor.out).toMatch(
      new RegExp(
        `^ok +database: reachable; the helpers' role reads users \\(as uid ${execFileSync('id', ['-u', 'www-data'], { encoding: 'utf8' }).trim()}\\)`,
        'm',
      ),
    );
  });

  it('group add prints the command that brings the new group in; pasted as printed, it works', async () => {
    const site = join(confDir, 'sites-available/plexer.conf');
    const added = sh(`node ${REPO_ROOT}/bin/plexer group add tenant3 --settings tenants.settings_generic --apache-config ${site}`);
    expect(added.code, added.out).toBe(0);
    const printed = added.out.split('\n')[1]?.trim() ?? '';
    expect(printed).toMatch(/ apache config --layout debian .* && apache2ctl graceful$/);
    const carol = sh(`node ${REPO_ROOT}/bin/plexer user add carol --group tenant3 --password-stdin`, 'carol-pw\n');
    expect(carol.code, carol.out).toBe(0);
    const pasted = sh(printed);
    expect(pasted.code, `${printed}\n${pasted.out}`).toBe(0);
    await waitFor(async () => (await whoami('carol')).group === 'tenant3', 20_000, 'carol served by tenant3 after the graceful reload');
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
