// The slot pool with the other modes, against a real Apache: the login page (form) with dbm: maps kept by plexer
// sync, where an account's first request gets a 307 to repeat (the session would not survive the internal
// redirect); and Basic with prefix routing, where a GET goes on at once and a POST gets the 307.
import { spawn, type ChildProcess } from 'node:child_process';
import { chmodSync, mkdirSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { cliOk, seedTwoTenants, startTestFront, type TestFront } from '../helpers/front.js';
import { PLEXER_BIN, runPlexer } from '../helpers/plexer.js';
import { removePoolAccounts, testPoolPrefix } from '../helpers/pool.js';
import { waitFor } from '../helpers/wait.js';

const prefix = testPoolPrefix();
let t: TestFront;
let sync: ChildProcess;
let mapDir: string;

beforeAll(async () => {
  t = await startTestFront(seedTwoTenants, {
    front: { auth: 'form' },
    beforeStart: async (stateDir, configPath) => {
      mapDir = join(stateDir, 'maps');
      mkdirSync(mapDir);
      chmodSync(mapDir, 0o755);
      const once = await runPlexer(['sync', '--dir', mapDir, '--once'], { configPath });
      if (once.code !== 0) throw new Error(`sync --once failed: ${once.stderr}`);
      return { extra: { mapDir, pool: { slots: 1, prefix, waitSeconds: 5 } } };
    },
  });
  sync = spawn(process.execPath, [PLEXER_BIN, 'sync', '--dir', mapDir, '--config', t.configPath], { env: {}, stdio: 'ignore' });
}, 120_000);

afterAll(async () => {
  if (sync.exitCode === null) sync.kill('SIGTERM');
  await t?.close();
  await removePoolAccounts(prefix);
});

// As a browser does: a 307 (an account's first request, with the login page) is followed with the same method and
// body; `manual` shows it instead.
async function request(path: string, o: { cookie?: string; form?: Record<string, string>; method?: string; manual?: boolean } = {}) {
  const headers: Record<string, string> = {};
  if (o.cookie) headers.cookie = o.cookie;
  let body: string | undefined;
  if (o.form) {
    headers['content-type'] = 'application/x-www-form-urlencoded';
    body = new URLSearchParams(o.form).toString();
  }
  const method = o.method ?? (body ? 'POST' : 'GET');
  let response = await fetch(`${t.front.httpd.url}${path}`, { method, headers, body, redirect: 'manual' });
  // As a browser does: a 307 (an account's first request, with the login page) is repeated with the same method
  // and body; `manual` shows it instead.
  if (response.status === 307 && !o.manual) {
    await response.text();
    response = await fetch(`${t.front.httpd.url}${response.headers.get('location')}`, { method, headers, body, redirect: 'manual' });
  }
  const text = await response.text();
  const cookie = response.headers.getSetCookie().find((c) => c.startsWith('plexer_session='));
  return { status: response.status, location: response.headers.get('location'), body: text, cookie: cookie?.split(';')[0] };
}

async function session(user: string): Promise<string> {
  const r = await request('/_plexer/form-login-handler', { form: { httpd_username: user, httpd_password: `${user}-pw` } });
  expect(r.status, r.body).toBe(302);
  expect(r.location, t.front.httpd.errorLog().slice(-3000)).toBe(`${t.front.httpd.url}/app/`);
  return r.cookie!;
}

describe('a pool with the login page and dbm: maps', () => {
  it('serves two accounts in turn from one slot', async () => {
    const alice = await session('alice');
    const bob = await session('bob');
    for (let round = 0; round < 2; round++) {
      for (const [cookie, user, account] of [
        [alice, 'alice', 'tenant1'],
        [bob, 'bob', 'tenant2'],
      ] as const) {
        const r = await request('/app/whoami', { cookie });
        expect(r.status, r.body + t.front.httpd.errorLog().slice(-3000)).toBe(200);
        expect(JSON.parse(r.body)).toMatchObject({ group: account, user, slot: 'slot-1' });
      }
    }
  }, 60_000);

  it('answers the first request of an account without a slot with a 307 to repeat, then serves the repeat', async () => {
    const alice = await session('alice');
    const bob = await session('bob');
    // alice's account holds the one slot; bob's does not.
    expect((await request('/app/whoami', { cookie: alice })).status).toBe(200);
    const first = await request('/app/whoami?x=1', { cookie: bob, method: 'POST', form: { note: 'hello' }, manual: true });
    expect(first.status).toBe(307);
    expect(first.location).toBe('/app/whoami?x=1');
    const again = await request(first.location!, { cookie: bob, method: 'POST', form: { note: 'hello' } });
    expect(again.status).toBe(200);
    expect(JSON.parse(again.body)).toMatchObject({ group: 'tenant2', user: 'bob' });
  }, 60_000);

  it('serves a new account made with the CLI once plexer sync has its map, with no reload', async () => {
    const apache = t.front.httpd.pid;
    await cliOk(t.cli, ['group', 'add', 'tenant3', '--settings', 'tenants.settings_generic']);
    await cliOk(t.cli, ['user', 'add', 'carol', '--group', 'tenant3', '--password-stdin'], 'carol-pw\n');
    const carol = await session('carol');
    const served = await waitFor(
      async () => {
        const r = await request('/app/whoami', { cookie: carol });
        return r.status === 200 ? JSON.parse(r.body) : undefined;
      },
      10_000,
      "carol's first page",
    );
    expect(served).toMatchObject({ group: 'tenant3', user: 'carol' });
    expect(t.front.httpd.pid).toBe(apache);
  }, 60_000);

  it("lets the login page's user into the admin of their account's own Django once made its staff", async () => {
    const staff = await runPlexer(
      [
        'group',
        'exec',
        'tenant1',
        '--apache-config',
        join(t.front.apacheDir, 'httpd.conf'),
        '--config',
        t.configPath,
        '--',
        'python3',
        'manage.py',
        'staff',
        'alice',
      ],
      {},
    );
    expect(staff.code, staff.stderr).toBe(0);
    const alice = await session('alice');
    const index = await request('/app/admin/', { cookie: alice });
    expect(index.status, index.body.slice(0, 500)).toBe(200);
    expect(index.body).toContain('Site administration');
    const whoami = JSON.parse((await request('/app/whoami', { cookie: alice })).body);
    expect(whoami).toMatchObject({ user: 'alice', django_user: 'alice', staff: true });
    // bob, of tenant2, is no staff of his own account's admin.
    const bob = await request('/app/admin/', { cookie: await session('bob') });
    expect(bob.status).toBe(302);
    expect(bob.location).toBe('/app/admin/login/?next=/app/admin/');
  }, 60_000);

  it('refuses the bind location asked for directly', async () => {
    const r = await request('/_plexer/bind');
    expect(r.status).toBe(403);
  });
});

describe('a pool with Basic and prefix routing', () => {
  let p: TestFront;
  const prefix2 = testPoolPrefix();
  beforeAll(async () => {
    p = await startTestFront(seedTwoTenants, { front: { routing: 'prefix', extra: { pool: { slots: 1, prefix: prefix2 } } } });
  }, 120_000);
  afterAll(async () => {
    await p?.close();
    await removePoolAccounts(prefix2);
  });
  const basic = (user: string) => ({ authorization: `Basic ${Buffer.from(`${user}:${user}-pw`).toString('base64')}` });

  it("serves two accounts in turn from one slot, each at its user's own prefix, a GET at once", async () => {
    for (let round = 0; round < 2; round++) {
      for (const [user, account] of [
        ['alice', 'tenant1'],
        ['bob', 'tenant2'],
      ] as const) {
        const r = await fetch(`${p.front.httpd.url}/app/whoami`, { headers: basic(user), redirect: 'manual' });
        const body = await r.text();
        expect(r.status, body).toBe(200);
        expect(JSON.parse(body)).toMatchObject({ group: account, user, slot: 'slot-1', script_name: '/app', path: '/app/whoami' });
      }
    }
  }, 60_000);

  it('answers a POST for an account without a slot with a 307 to the URL asked', async () => {
    // alice's account holds the one slot now; bob's does not.
    expect((await fetch(`${p.front.httpd.url}/app/whoami`, { headers: basic('alice') })).status).toBe(200);
    const r = await fetch(`${p.front.httpd.url}/app/whoami?x=1`, {
      method: 'POST',
      headers: basic('bob'),
      body: 'a=1',
      redirect: 'manual',
    });
    expect(r.status).toBe(307);
    expect(r.headers.get('location')).toBe('/app/whoami?x=1');
  }, 60_000);
});
