// PostgreSQL stops under a real Apache serving the login page with server-side sessions (mod_session_dbd):
// what a logged-in user and a new login get, in bounded time, and that sessions work again by themselves.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startFront, type Front } from '../../src/demo/front.js';
import { freePort } from '../../src/demo/httpd.js';
import type { PrivateCluster } from '../../src/demo/private-cluster.js';
import { loadConfig } from '../../src/config.js';
import { storeOnOwnCluster, type OwnClusterStore } from '../helpers/own-cluster.js';
import { waitFor } from '../helpers/wait.js';

let cluster: PrivateCluster;
let front: Front;
let store: OwnClusterStore;

interface Answer {
  status: number;
  location: string | null;
  body: string;
  cookie: string | null;
  ms: number;
}

async function request(path: string, o: { cookie?: string; form?: Record<string, string> } = {}): Promise<Answer> {
  const started = performance.now();
  const response = await fetch(`${front.httpd.url}${path}`, {
    method: o.form ? 'POST' : 'GET',
    redirect: 'manual',
    headers: { ...(o.cookie ? { cookie: o.cookie } : {}), ...(o.form ? { 'content-type': 'application/x-www-form-urlencoded' } : {}) },
    body: o.form ? new URLSearchParams(o.form).toString() : undefined,
  });
  const body = await response.text();
  const set = response.headers.getSetCookie().find((c) => c.startsWith('plexer_session='));
  return {
    status: response.status,
    location: response.headers.get('location'),
    body,
    cookie: set ? set.split(';')[0]! : null,
    ms: performance.now() - started,
  };
}

const login = (user: string) => request('/_plexer/form-login-handler', { form: { httpd_username: user, httpd_password: `${user}-pw` } });

beforeAll(async () => {
  store = await storeOnOwnCluster('pxf', 'formoutage');
  const { cli, configPath, dir } = store;
  cluster = store.cluster;
  await cli(['group', 'add', 'tenant1', '--settings', 'tenants.settings_generic']);
  await cli(['user', 'add', 'alice', '--group', 'tenant1', '--password-stdin'], 'alice-pw\n');
  await cli(['user', 'add', 'carol', '--group', 'tenant1', '--password-stdin'], 'carol-pw\n');
  front = await startFront({
    stateDir: dir,
    configPath,
    config: loadConfig({ path: configPath }),
    port: await freePort(),
    auth: 'form',
    authCacheTimeoutSeconds: 300,
  });
}, 120_000);

afterAll(async () => {
  await front?.stop();
  await store?.close();
});

describe('database outage with server-side sessions', () => {
  it('answers in bounded time, never serves another tenant, and sessions work again after the restart', async () => {
    const cookie = (await login('alice')).cookie!;
    await waitFor(async () => (await request('/app/whoami', { cookie })).status === 200, 15_000, 'alice served');
    await cluster.stop();

    const during = [];
    for (let i = 0; i < 5; i++) during.push(await request('/app/whoami', { cookie }));
    const newLogin = await login('carol');
    // The session cannot be read, so there is none: the login page, quickly (mod_dbd fails fast on a refused
    // connection). mod_auth_form has no "cannot check" answer: this looks like a logged-out user (apache/LOGINS.md,
    // "Outage"). Never a 200, never another instance.
    expect(during.map((r) => `${r.status} ${r.location}`)).toEqual(Array(5).fill('302 /_plexer/login/login.html'));
    // A new login: the authenticator cannot check the password and refuses, which looks like a wrong one.
    expect(newLogin.status).toBe(401);
    expect(newLogin.body).toContain('plexer-login-page');
    expect(Math.max(...during.map((r) => r.ms), newLogin.ms)).toBeLessThan(3_500);
    // Which error mod_session logs depends on the child: one whose database connection broke cannot load the
    // session (AH01816); a child that never had one finds no session and then cannot save the new one (AH01822).
    expect(front.httpd.errorLog()).toMatch(/AH01816: error while loading the session|AH01822: error while saving the session/);
    await cluster.start();
    await waitFor(
      async () => (await request('/app/whoami', { cookie: (await login('alice')).cookie ?? '' })).status === 200,
      20_000,
      'a new session served after the restart',
    );
  }, 120_000);
});
