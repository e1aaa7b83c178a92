// Prototype of the Apache side with a REAL Apache (Debian's apache2 + mod_wsgi + mod_authnz_external) and
// tiny shell stand-ins for `plexer map …`, `plexer authn` and `plexer authz`. It proves the routing idiom of
// src/apache/render/; the real end-to-end tests run the real plexer helpers instead.
import { apacheOwner, ensureAccountDataDir } from '../../src/tenant-users.js';
import { execFileSync } from 'node:child_process';
import { chmodSync, cpSync, existsSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { INSTALL } from '../helpers/render-options.js';
import { ApacheConfigError, renderApacheConfig, type ApacheConfigOptions } from '../../src/apache/render/index.js';
import { freePort, startHttpd, type Httpd } from '../helpers/httpd.js';

const repo = join(dirname(fileURLToPath(import.meta.url)), '../..');
const haveApache =
  existsSync('/usr/sbin/apache2') &&
  existsSync('/usr/lib/apache2/modules/mod_wsgi.so') &&
  existsSync('/usr/lib/apache2/modules/mod_authnz_external.so') &&
  process.getuid?.() === 0;

// Stand-in for bin/plexer: `map group|settings`, `authn`, `authz`; always followed by --config FILE.
// bash's builtin echo writes each answer line immediately (no buffering), as mod_rewrite requires.
const STANDIN = `#!/bin/bash
mode="$1 $2"
case "$mode" in
  "map group")
    while IFS= read -r key; do
      case "$key" in
        alice) echo "#alice=alpha" ;;
        bob) echo "#bob=beta" ;;
        carol) echo "#carol=gamma" ;;
        erin) echo "#erin=delta" ;;
        frank) echo "#frank=zeta" ;;
        grace) echo ;;
        ivan) echo "#ivan=eps" ;;
        *) echo "#$key=" ;;
      esac
    done ;;
  "map settings")
    while IFS= read -r key; do
      case "$key" in
        gamma) echo "#gamma=tenants.settings_generic" ;;
        *) echo "#$key=" ;;
      esac
    done ;;
  "authn --counted-by-log")
    IFS= read -r user || exit 2
    IFS= read -r pass || exit 2
    # Exactly two lines: a user name with a newline in it would otherwise shift the password into line 2.
    if IFS= read -r extra || [ -n "$extra" ]; then exit 4; fi
    case "$user:$pass" in
      alice:apw|bob:bpw|carol:cpw|dave:dpw|erin:epw|frank:fpw|grace:gpw|ivan:ipw) exit 0 ;;
    esac
    exit 1 ;;
  "authz --config")
    IFS= read -r user || exit 2
    IFS= read -r roles || exit 2
    for role in $roles; do
      case "$user:$role" in alice:admin) exit 0 ;; esac
    done
    exit 1 ;;
  "lockout --lock-dir")
    # Counts nothing, locks nobody: routing is what this prototype checks.
    exec cat > /dev/null ;;
esac
exit 9
`;

interface WhoAmI {
  group: string;
  settings: string;
  database: string;
  user: string;
  tenant_data: string;
  pid: number;
}

const basic = (user: string, password: string) => 'Basic ' + Buffer.from(`${user}:${password}`, 'latin1').toString('base64');

describe.skipIf(!haveApache)('Apache routing prototype (stand-in helpers)', () => {
  let root: string;
  let httpd: Httpd;
  let options: ApacheConfigOptions;

  const get = async (path: string, user?: [string, string], headers: Record<string, string> = {}) => {
    const res = await fetch(httpd.url + path, {
      headers: { ...(user ? { authorization: basic(...user) } : {}), ...headers },
      redirect: 'manual',
    });
    return { status: res.status, body: await res.text(), headers: res.headers };
  };
  const whoami = async (user: [string, string], headers: Record<string, string> = {}, query = '') => {
    const res = await get('/app/whoami' + query, user, headers);
    expect(res.status, res.body + httpd.errorLog().slice(-2000)).toBe(200);
    return JSON.parse(res.body) as WhoAmI;
  };

  beforeAll(async () => {
    root = mkdtempSync(join(tmpdir(), 'plexer-apache-'));
    // Apache's workers, WSGI daemons and helpers run as www-data: everything must be readable by it.
    chmodSync(root, 0o755);
    const app = join(root, 'app');
    for (const part of ['wsgi', 'example', 'errors']) cpSync(join(repo, 'apache', part), join(app, part), { recursive: true });
    execFileSync('chmod', ['-R', 'a+rX', app]);
    const bin = join(root, 'bin');
    mkdirSync(bin, { mode: 0o755 });
    writeFileSync(join(bin, 'plexer'), STANDIN, { mode: 0o755 });
    writeFileSync(join(root, 'plexer.conf'), '# stand-in\n', { mode: 0o644 });
    const data = join(root, 'data');
    // Each group's own 0700 directory, as the front end prepares them (www-data's: no run-as here).
    for (const g of ['alpha', 'beta', 'gamma', 'eps', 'delta', 'zeta']) ensureAccountDataDir(data, g, apacheOwner());
    const state = join(root, 'state');
    options = {
      listenAddress: '127.0.0.1',
      port: await freePort(),
      serverName: 'localhost',
      stateDir: state,
      dataDir: data,
      lockDir: join(root, 'locks'),
      plexerCommand: [join(bin, 'plexer')],
      configFile: join(root, 'plexer.conf'),
      wsgiScript: join(app, 'wsgi', 'plexer.wsgi'),
      pythonPath: join(app, 'example'),
      errorPagesDir: join(app, 'errors'),
      accounts: [
        { name: 'alpha', settingsModule: 'tenants.settings_alpha', enabled: true },
        { name: 'beta', settingsModule: 'tenants.settings_beta', enabled: true },
        { name: 'gamma', settingsModule: null, enabled: true },
        { name: 'eps', settingsModule: null, enabled: true },
        { name: 'delta', settingsModule: 'tenants.settings_generic', enabled: false },
      ],
      mapUser: 'www-data:www-data',
      // The stub plexer below answers the two-map form (a group map, then a settings map).
      twoMaps: true,
      tls: false,
      authCacheTimeoutSeconds: 60,
      roleLocations: [{ path: '/app/admin', roles: ['admin', 'ops'] }],
      wsgiThreads: 2,
      logLevel: 'warn',
    };
    httpd = await startHttpd({ config: renderApacheConfig(options), dir: state });
  });

  afterAll(async () => {
    await httpd?.stop();
    if (root && !process.env.KEEP_APACHE_PROTOTYPE) rmSync(root, { recursive: true, force: true });
  });

  it('asks for credentials without any: 401 and the challenge, even with no refusal page served', async () => {
    // The stand-in lockout serves no page (plexer lockout does, on LOCKDIR/refused.sock): Apache's ErrorDocument
    // fetch fails and it still answers 401 with its challenge, never a 503 in its place.
    const res = await get('/app/whoami');
    expect(res.status).toBe(401);
    expect(res.headers.get('www-authenticate')).toBe('Basic realm="plexer"');
    expect(res.body).toContain('401');
  });

  it('rejects unknown users and wrong passwords (401)', async () => {
    expect((await get('/app/whoami', ['mallory', 'x'])).status).toBe(401);
    expect((await get('/app/whoami', ['alice', 'bpw'])).status).toBe(401);
  });

  it('rejects a user name with a newline in it (cannot shift lines of the pipe protocol)', async () => {
    // mod_authnz_external writes "user\npassword\n": this would read as user "alice", password "apw".
    const res = await get('/app/whoami', ['alice\napw', 'anything']);
    expect(res.status).toBe(401);
  });

  it('routes alice and bob to their own groups, processes, settings and databases', async () => {
    const alice = await whoami(['alice', 'apw']);
    const bob = await whoami(['bob', 'bpw']);
    expect(alice).toMatchObject({ group: 'alpha', settings: 'tenants.settings_alpha', user: 'alice', tenant_data: 'Alpha Corp' });
    expect(bob).toMatchObject({ group: 'beta', settings: 'tenants.settings_beta', user: 'bob', tenant_data: 'Beta Ltd' });
    expect(alice.database).toBe(join(options.dataDir!, 'alpha', 'alpha.sqlite3'));
    expect(bob.database).toBe(join(options.dataDir!, 'beta', 'beta.sqlite3'));
    expect(alice.pid).not.toBe(bob.pid);
    expect(alice.pid).not.toBe(httpd.pid);
    // Each is a mod_wsgi daemon of the right name (display-name=%{GROUP}) running as www-data.
    for (const [who, group] of [
      [alice, 'alpha'],
      [bob, 'beta'],
    ] as const) {
      expect(readFileSync(`/proc/${who.pid}/cmdline`, 'utf8')).toContain(`(wsgi:${group}`);
      expect(readFileSync(`/proc/${who.pid}/status`, 'utf8')).toMatch(/^Uid:\s+33\s/m);
    }
  });

  it('runs the map programs unprivileged (third RewriteMap argument), one per map', async () => {
    const maps = readdirSync('/proc')
      .filter((d) => /^\d+$/.test(d))
      .map((pid) => {
        try {
          return {
            pid,
            cmd: readFileSync(`/proc/${pid}/cmdline`, 'utf8').split('\0').join(' '),
            status: readFileSync(`/proc/${pid}/status`, 'utf8'),
          };
        } catch {
          return undefined;
        }
      })
      .filter((p) => p !== undefined && p.cmd.includes(join(root, 'bin', 'plexer')) && p.cmd.includes(' map '));
    expect(maps.map((p) => p!.cmd.replace(/.*plexer /, '')).sort()).toEqual([
      `map group --config ${join(root, 'plexer.conf')} `,
      `map settings --config ${join(root, 'plexer.conf')} `,
    ]);
    for (const p of maps) expect(p!.status).toMatch(/^Uid:\s+33\s/m);
  });

  it('takes the settings module from the settings map for groups rendered without one', async () => {
    const carol = await whoami(['carol', 'cpw']);
    expect(carol).toMatchObject({ group: 'gamma', settings: 'tenants.settings_generic', tenant_data: 'tenant gamma' });
    // The map knows no settings for eps: our 503, and the daemon never loads Django.
    const ivan = await get('/app/whoami', ['ivan', 'ipw']);
    expect(ivan.status).toBe(503);
    expect(ivan.body).toContain('plexer-error:503');
  });

  it('gives a user whose map answer is NULL our 403 page, never a default group', async () => {
    const res = await get('/app/whoami', ['dave', 'dpw']);
    expect(res.status).toBe(403);
    expect(res.body).toContain('plexer-error:403');
    expect(res.body).not.toMatch(/WSGI|alpha|beta/);
  });

  it('gives our 503 for a disabled group, an unconfigured group and an empty map answer', async () => {
    for (const user of [
      ['erin', 'epw'],
      ['frank', 'fpw'],
      ['grace', 'gpw'],
    ] as [string, string][]) {
      const res = await get('/app/whoami', user);
      expect(res.status, user[0]).toBe(503);
      expect(res.body).toContain('plexer-error:503');
    }
    expect(httpd.errorLog()).not.toMatch(/No WSGI daemon process called/);
  });

  it('lets nothing the client sends choose the group or the settings', async () => {
    const forged = {
      'process-group': 'beta',
      'x-process-group': 'beta',
      'plexer-settings': 'tenants.settings_beta',
      'remote-user': 'bob',
      'x-remote-user': 'bob',
      cookie: 'PROCESS_GROUP=beta; group=beta; PLEXER_SETTINGS=tenants.settings_beta',
    };
    const alice = await whoami(['alice', 'apw'], forged, '?group=beta&PROCESS_GROUP=beta&PLEXER_SETTINGS=tenants.settings_beta');
    expect(alice).toMatchObject({ group: 'alpha', settings: 'tenants.settings_alpha', user: 'alice' });
    // A user without a group stays without one whatever they send.
    const dave = await get('/app/whoami?PROCESS_GROUP=alpha', ['dave', 'dpw'], forged);
    expect(dave.status).toBe(403);
  });

  it('keeps routing right under concurrent requests from different users (shared map process)', async () => {
    const users: [string, string, string][] = [
      ['alice', 'apw', 'alpha'],
      ['bob', 'bpw', 'beta'],
      ['carol', 'cpw', 'gamma'],
    ];
    // 60 requests, 15 at a time: one address may hold at most 20 connections (mod_qos refuses the 21st at once).
    for (let batch = 0; batch < 4; batch++) {
      const results = await Promise.all(
        Array.from({ length: 15 }, (_, i) => users[i % 3]!).map(async ([u, p, g]) => ({ g, r: await whoami([u, p]) })),
      );
      for (const { g, r } of results) expect(r.group).toBe(g);
    }
  });

  it('requires a role on role locations (GroupExternal)', async () => {
    const alice = await get('/app/admin/whoami', ['alice', 'apw']);
    expect(alice.status).toBe(200);
    expect(JSON.parse(alice.body)).toMatchObject({ group: 'alpha' });
    const bob = await get('/app/admin/whoami', ['bob', 'bpw']);
    expect(bob.status).toBe(403);
    expect((await get('/app/admin/whoami')).status).toBe(401);
  });

  it('serves nothing outside the application and the error pages', async () => {
    expect([403, 404]).toContain((await get('/')).status);
    expect([403, 404]).toContain((await get('/whoami')).status);
    expect((await get('/_plexer/errors/503.html')).status).toBe(200);
  });

  it('survives a graceful restart with the same routing', async () => {
    await httpd.graceful();
    expect(await whoami(['bob', 'bpw'])).toMatchObject({ group: 'beta' });
  });
});

describe('renderApacheConfig', () => {
  const base: ApacheConfigOptions = { ...INSTALL, accounts: [{ name: 'alpha', settingsModule: 'tenants.settings_alpha', enabled: true }] };

  it('is deterministic and wires the helpers with absolute paths', () => {
    const text = renderApacheConfig(base);
    expect(renderApacheConfig(base)).toBe(text);
    expect(text).toContain(
      'RewriteMap plexer_group "prg:/usr/bin/node /opt/plexer/bin/plexer map group --config /etc/plexer/plexer.conf" www-data:www-data',
    );
    expect(text).toContain(
      'DefineExternalAuth plexer pipe "/usr/bin/node /opt/plexer/bin/plexer authn --counted-by-log --lock-dir /run/plexer/locks --config /etc/plexer/plexer.conf"',
    );
    // Every 401 goes to plexer lockout, and every authenticated request checks its lock files.
    expect(text).toMatch(
      /^CustomLog "\|\/usr\/bin\/node \/opt\/plexer\/bin\/plexer lockout --lock-dir \/run\/plexer\/locks --refusal-page \S+\/401.html --config \/etc\/plexer\/plexer.conf" "%<u %a" "expr=%\{REQUEST_STATUS\} == 401 && -z %\{ENV:PLEXER_LOGGED_IN\}"$/m,
    );
    expect(text).toMatch(
      /<RequireAll>\n\s+Require valid-user\n\s+Require expr "\(!-f '\S+\/locks\/user\/%\{REMOTE_USER\}' \|\| -f '\S+\/locks\/known\/%\{REMOTE_ADDR\}\/%\{REMOTE_USER\}'\) && /,
    );
    expect(text).not.toContain('RemoteIP');
    expect(text).toContain('WSGIRestrictProcess alpha\n');
    expect(text).not.toContain('plexer_settings'); // no group needs the settings map
    expect(text).toMatch(/^    RewriteEngine On$/m); // vhost level
  });

  it('takes the client address from X-Forwarded-For only from --trusted-proxy addresses', () => {
    const text = renderApacheConfig({ ...base, trustedProxies: ['127.0.0.1', '10.0.0.0/8', 'fd00::/8'] });
    expect(text).toContain('LoadModule remoteip_module');
    expect(text).toMatch(
      /RemoteIPHeader X-Forwarded-For\n\s+RemoteIPInternalProxy 127\.0\.0\.1\n\s+RemoteIPInternalProxy 10\.0\.0\.0\/8\n\s+RemoteIPInternalProxy fd00::\/8\n/,
    );
  });

  it('renders a safe config for zero groups', () => {
    const text = renderApacheConfig({ ...base, accounts: [] });
    expect(text).not.toContain('WSGIDaemonProcess ');
    expect(text).toContain('WSGIRestrictProcess _unrouted_');
  });

  it('refuses options that could inject directives or split the prg: command', () => {
    const bad: Partial<ApacheConfigOptions>[] = [
      { configFile: '/etc/plexer/my plexer.conf' },
      { configFile: 'relative.conf' },
      { stateDir: '/srv/${APACHE_RUN_DIR}' },
      { wsgiScript: '/opt/x"\nRequire all granted' },
      { plexerCommand: ['node', '/opt/plexer/bin/plexer'] },
      { accounts: [{ name: 'Alpha', settingsModule: null, enabled: true }] },
      { accounts: [{ name: 'a b', settingsModule: null, enabled: true }] },
      { accounts: [{ name: 'alpha', settingsModule: 'x;y', enabled: true }] },
      {
        accounts: [
          { name: 'alpha', settingsModule: null, enabled: true },
          { name: 'alpha', settingsModule: null, enabled: false },
        ],
      },
      { mapUser: 'root' },
      { tls: true },
      { roleLocations: [{ path: '/elsewhere', roles: ['admin'] }] },
      { trustedProxies: ['proxy.example'] },
      { trustedProxies: ['10.0.0.0/33'] },
      { trustedProxies: ['10.0.0.1\nRequire all granted'] },
    ];
    for (const b of bad) expect(() => renderApacheConfig({ ...base, ...b }), JSON.stringify(b)).toThrow(ApacheConfigError);
  });
});
