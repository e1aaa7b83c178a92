// The rendered Apache configuration for every mode, pinned byte for byte in test/unit/golden/*.conf. A change to the
// renderer that changes any of them shows up as a diff of the config Apache would load: review it, then accept
// it with `npx vitest run test/unit/render-golden.test.ts -u` and commit the golden files with the change.
// The inputs are fixed (no clock, no free port, no temp dir) so the same source always gives the same text.
import { readdirSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { describe, expect, it } from 'vitest';
import { INSTALL } from '../helpers/render-options.js';
import type { Account } from '../../src/accounts/model.js';
import { renderApacheConfig, type ApacheConfigOptions } from '../../src/apache/render/index.js';

const GOLDEN_DIR = fileURLToPath(new URL('./golden/', import.meta.url));

// alpha takes its settings from the map, beta has them rendered in and its own OS user, gamma is disabled.
const ACCOUNTS: Account[] = [
  { name: 'alpha', settingsModule: null, enabled: true },
  { name: 'beta', settingsModule: 'tenants.settings_beta', enabled: true, runAs: 'tenant-beta:tenants' },
  { name: 'gamma', settingsModule: null, enabled: false },
];

const BASE: ApacheConfigOptions = { ...INSTALL, serverName: 'plexer.example', accounts: ACCOUNTS };

const FORM: Partial<ApacheConfigOptions> = {
  auth: 'form',
  sessionPassphraseFile: '/etc/plexer/session.key',
  formFieldSecret: '0123456789abcdef0123456789abcdef',
};
const DBM: Partial<ApacheConfigOptions> = { mapDir: '/var/lib/plexer/maps' };
const SESSIONS_IN_DB: Partial<ApacheConfigOptions> = {
  sessionDatabase: {
    conninfo: 'host=/var/run/postgresql dbname=plexer user=plexer_helper application_name=plexer-sessions',
    schema: 'plexer',
  },
};

// Golden file name -> the options that differ from BASE.
const CASES: Record<string, Partial<ApacheConfigOptions>> = {};
for (const auth of ['basic', 'form'] as const) {
  for (const routing of ['wsgi', 'proxy', 'prefix'] as const) {
    // The login page with prefix routing is refused (validate.ts).
    if (auth === 'form' && routing === 'prefix') continue;
    for (const maps of ['prg', 'dbm'] as const) {
      CASES[`${auth}-${routing}-${maps}`] = { ...(auth === 'form' ? FORM : {}), routing, ...(maps === 'dbm' ? DBM : {}) };
    }
  }
}
Object.assign(CASES, {
  // prg: maps: one route map (the default) against the group + settings maps, and no settings map at all when
  // every group has its settings rendered in (`--settings-from config`).
  'basic-wsgi-prg-two-maps': { twoMaps: true },
  'basic-prefix-prg-two-maps': { routing: 'prefix', twoMaps: true },
  'basic-wsgi-prg-settings-in-config': {
    accounts: ACCOUNTS.map((g) => ({ ...g, settingsModule: g.settingsModule ?? `tenants.settings_${g.name}` })),
  },
  'basic-wsgi-no-groups': { accounts: [] },
  'basic-wsgi-tls': {
    tls: true,
    tlsCertificateFile: '/etc/ssl/certs/plexer.pem',
    tlsCertificateKeyFile: '/etc/ssl/private/plexer.key',
    trustedProxies: ['10.0.0.0/8', 'fd00::/8'],
  },
  'basic-wsgi-roles': {
    roleLocations: [
      { path: '/app/admin', roles: ['admin'] },
      { path: '/app/reports', roles: ['auditor', 'admin'] },
    ],
  },
  'form-wsgi-sessions-db': { ...FORM, ...SESSIONS_IN_DB, sessionMaxAgeSeconds: 3600 },
  'form-proxy-tls-proxy': { ...FORM, ...SESSIONS_IN_DB, routing: 'proxy', tlsProxy: true, trustedProxies: ['127.0.0.1'] },
  'form-wsgi-tls': {
    ...FORM,
    tls: true,
    tlsCertificateFile: '/etc/ssl/certs/plexer.pem',
    tlsCertificateKeyFile: '/etc/ssl/private/plexer.key',
    loginSuccessPath: '/app/home',
  },
  'form-wsgi-inline-passphrase': { auth: 'form', sessionPassphrase: 'golden-passphrase-golden-passphrase-0123' },
  'debian-basic-wsgi': { layout: 'debian', listenAddress: '*', port: 80 },
  'debian-form-proxy-listen': {
    ...FORM,
    ...SESSIONS_IN_DB,
    layout: 'debian',
    routing: 'proxy',
    listenAddress: '*',
    port: 8443,
    listen: true,
  },
  'debian-basic-prefix-dbm': { ...DBM, layout: 'debian', routing: 'prefix', listenAddress: '*', port: 80 },
  // A pool of slots: the accounts are not rendered at all (accounts come and go without a reload).
  'basic-wsgi-pool': { pool: { slots: 3 } },
  'form-wsgi-dbm-pool': { ...FORM, ...DBM, pool: { slots: 2, prefix: 'pxa', waitSeconds: 5, minIdleSeconds: 2 } },
  'basic-prefix-prg-pool': { routing: 'prefix', pool: { slots: 2, spares: 1, spareIdleSeconds: 0 } },
  'debian-basic-wsgi-pool': { layout: 'debian', listenAddress: '*', port: 80, pool: { slots: 20 } },
  // The login cache in memcached (it outlives a reload; plexer revoke removes a changed user at once).
  // …and authn a thin client of plexer checker.
  'basic-wsgi-login-cache': { loginCacheSocket: '/run/plexer-logins/cache.sock', authCacheTimeoutSeconds: 28800, loginChecker: true },
  'form-wsgi-login-cache': {
    ...FORM,
    loginCacheSocket: '/run/plexer-logins/cache.sock',
    authCacheTimeoutSeconds: 28800,
    loginChecker: true,
  },
} satisfies Record<string, Partial<ApacheConfigOptions>>);

// Taken before any snapshot runs: vitest writes a missing file snapshot instead of failing (outside CI).
const committed = new Set(readdirSync(GOLDEN_DIR).filter((f) => f.endsWith('.conf')));

describe('rendered config, golden files', () => {
  for (const [name, options] of Object.entries(CASES)) {
    it(name, async () => {
      await expect(renderApacheConfig({ ...BASE, ...options })).toMatchFileSnapshot(`golden/${name}.conf`);
    });
  }

  it('has a committed golden file for every case and none for a case that is gone', () => {
    const expected = Object.keys(CASES)
      .map((name) => `${name}.conf`)
      .sort();
    // A first run for a new case writes its file and fails here: review the file, commit it, run again.
    expect([...committed].sort()).toEqual(expected);
  });
});
