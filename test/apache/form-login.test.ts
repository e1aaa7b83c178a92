// Form login (auth: 'form') against a real Apache: mod_auth_form + an encrypted session cookie, checked by the
// real plexer authenticator, routed by the real group map to a real Django per daemon group.
import { randomBytes } from 'node:crypto';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { cliOk, seedTwoTenants, startTestFront, type TestFront } from '../helpers/front.js';
import { waitFor } from '../helpers/wait.js';

let t: TestFront;
const SESSION_MAX_AGE = 4;

interface Answer {
  status: number;
  location: string | null;
  cookie: string | null;
  body: string;
  json(): any;
}

async function request(
  path: string,
  o: { cookie?: string; method?: string; form?: Record<string, string>; headers?: Record<string, string> } = {},
): Promise<Answer> {
  const headers: Record<string, string> = { ...o.headers };
  if (o.cookie !== undefined) headers.cookie = o.cookie;
  let body: string | undefined;
  if (o.form) {
    headers['content-type'] = 'application/x-www-form-urlencoded';
    body = new URLSearchParams(o.form).toString();
  }
  const response = await fetch(`${t.front.httpd.url}${path}`, {
    method: o.method ?? (body ? 'POST' : 'GET'),
    headers,
    body,
    redirect: 'manual',
  });
  const text = await response.text();
  const setCookie = response.headers.getSetCookie().find((c) => c.startsWith('plexer_session='));
  return {
    status: response.status,
    location: response.headers.get('location'),
    body: text,
    json: () => JSON.parse(text),
    cookie: setCookie ? setCookie.split(';')[0]! : null,
  };
}

async function login(user: string, password = `${user}-pw`): Promise<Answer> {
  return request('/_plexer/form-login-handler', { form: { httpd_username: user, httpd_password: password } });
}

async function loggedIn(user: string): Promise<string> {
  const r = await login(user);
  expect(r.status, r.body).toBe(302);
  expect(r.location).toBe(`${t.front.httpd.url}/app/`);
  expect(r.cookie).toMatch(/^plexer_session=.{20,}/);
  return r.cookie!;
}

const isLoginRedirect = (r: Answer) => r.status === 302 && r.location === '/_plexer/login/login.html';

beforeAll(async () => {
  t = await startTestFront(
    async (cli) => {
      await seedTwoTenants(cli);
      await cliOk(cli, ['user', 'add', 'gina', '--group', 'tenant1', '--password-stdin'], 'gina-pw\n');
      await cliOk(cli, ['user', 'add', 'dave', '--group', 'none', '--password-stdin'], 'dave-pw\n');
    },
    { front: { auth: 'form', sessionMaxAgeSeconds: SESSION_MAX_AGE, authCacheTimeoutSeconds: 2 } },
  );
}, 60_000);

afterAll(async () => {
  await t?.close();
});

describe('form login: cookie sessions that never choose the instance', () => {
  it('sends a visitor without a session to the login page, which is served without login', async () => {
    expect(isLoginRedirect(await request('/app/whoami'))).toBe(true);
    const page = await request('/_plexer/login/login.html');
    expect(page.status).toBe(200);
    expect(page.body).toContain('name="httpd_username"');
    expect(page.body).toContain('action="/_plexer/form-login-handler"');
    // The cookie carries the session's attributes.
    const response = await fetch(`${t.front.httpd.url}/_plexer/form-login-handler`, {
      method: 'POST',
      redirect: 'manual',
      headers: { 'content-type': 'application/x-www-form-urlencoded' },
      body: 'httpd_username=alice&httpd_password=alice-pw',
    });
    expect(response.headers.getSetCookie().join('\n')).toMatch(/plexer_session=[^;]+;.*path=\/;HttpOnly;SameSite=Lax/);
  });

  it('refuses wrong passwords back to the login page, and lands a good login on the own instance', async () => {
    // A refusal is no redirect: the login page itself, answered 401 at the handler's address.
    const wrong = await login('alice', 'nope');
    expect(wrong.status).toBe(401);
    expect(wrong.body).toContain('plexer-login-page');
    // mod_session may answer with a (new, empty) session cookie: it opens nothing.
    if (wrong.cookie) expect(isLoginRedirect(await request('/app/whoami', { cookie: wrong.cookie }))).toBe(true);
    const cookie = await loggedIn('alice');
    const me = await request('/app/whoami', { cookie });
    expect(me.status, me.body).toBe(200);
    expect(me.json()).toMatchObject({ group: 'tenant1', user: 'alice' });
    const bob = await request('/app/whoami', { cookie: await loggedIn('bob') });
    expect(bob.json()).toMatchObject({ group: 'tenant2', user: 'bob' });
  });

  it('treats tampered and forged cookies as no session', async () => {
    const cookie = await loggedIn('alice');
    const value = cookie.slice('plexer_session='.length);
    const flip = (i: number) => value.slice(0, i) + (value[i] === 'A' ? 'B' : 'A') + value.slice(i + 1);
    for (const forged of [
      flip(0),
      flip(Math.floor(value.length / 2)),
      flip(value.length - 2),
      flip(value.length - 6),
      value.slice(0, -4),
      value.slice(4),
      'AAAA' + value,
      'user=bob&pw=bob-pw',
      'user=bob',
      randomBytes(48).toString('base64'),
      '',
    ]) {
      const r = await request('/app/whoami', { cookie: `plexer_session=${forged}` });
      expect(isLoginRedirect(r), `${forged}: ${r.status} ${r.location}`).toBe(true);
    }
    // Bytes appended after the base64 padding are ignored by the decoder: the same ciphertext, alice's own session.
    const padded = await request('/app/whoami', { cookie: `plexer_session=${value}AAAA` });
    if (padded.status === 200) expect(padded.json()).toMatchObject({ group: 'tenant1', user: 'alice' });
    else expect(isLoginRedirect(padded)).toBe(true);
    expect(t.front.httpd.errorLog()).not.toMatch(/segfault|exit signal/);
  });

  it("serves bob's valid cookie, whoever presents it, from bob's instance only", async () => {
    const bobs = await loggedIn('bob');
    const basicAlice = `Basic ${Buffer.from('alice:alice-pw').toString('base64')}`;
    const r = await request('/app/whoami?group=tenant1&PROCESS_GROUP=tenant1', {
      cookie: `${bobs}; PROCESS_GROUP=tenant1; group=tenant1`,
      headers: { authorization: basicAlice, 'X-Remote-User': 'alice', 'Remote-User': 'alice', 'Process-Group': 'tenant1' },
    });
    expect(r.status, `${r.location} ${r.body}`).toBe(200);
    expect(r.json()).toMatchObject({ group: 'tenant2', user: 'bob' });
    // Two session cookies: whichever one Apache reads, the instance is that user's own.
    const both = await request('/app/whoami', { cookie: `${await loggedIn('alice')}; ${bobs}` });
    // (mod_session_cookie refuses the ambiguous header: the login page. Either way, never a third tenant.)
    if (both.status === 200)
      expect([
        ['tenant1', 'alice'],
        ['tenant2', 'bob'],
      ]).toContainEqual([both.json().group, both.json().user]);
    else expect(isLoginRedirect(both)).toBe(true);
    // A user without a group: our 403, never a tenant.
    const dave = await request('/app/whoami', { cookie: await loggedIn('dave') });
    expect(dave.status).toBe(403);
    expect(dave.body).toContain('plexer-error:403');
  });

  it("logs out: the browser's cookie is replaced by an empty, expiring one that opens nothing", async () => {
    const cookie = await loggedIn('alice');
    expect((await request('/app/whoami', { cookie })).status).toBe(200);
    const out = await request('/_plexer/logout', { cookie });
    expect([302, 307]).toContain(out.status);
    expect(out.location).toBe('/_plexer/login/login.html?logged-out=1');
    expect(out.cookie).not.toBeNull();
    expect(out.cookie).not.toBe(cookie);
    const after = await request('/app/whoami', { cookie: out.cookie! });
    expect(isLoginRedirect(after), `${out.cookie} -> ${after.status} ${after.location} ${after.body.slice(0, 100)}`).toBe(true);
    // Sessions are server-side (mod_session_dbd): logout deleted the row, so a copy of the cookie is dead too.
    expect(isLoginRedirect(await request('/app/whoami', { cookie }))).toBe(true);
  });

  it('lets a session expire after SessionMaxAge of inactivity', async () => {
    const cookie = await loggedIn('bob');
    expect((await request('/app/whoami', { cookie })).status).toBe(200);
    // The idle time is what is tested: any request in it would be activity and keep the session alive.
    await new Promise((r) => setTimeout(r, (SESSION_MAX_AGE + 1.2) * 1000));
    expect(isLoginRedirect(await request('/app/whoami', { cookie }))).toBe(true);
  });

  it('cuts off a disabled user with a still valid cookie: our 403 at once, the login page once the cache expires', async () => {
    const cookie = await loggedIn('gina');
    expect((await request('/app/whoami', { cookie })).json().group).toBe('tenant1');
    await cliOk(t.cli, ['user', 'disable', 'gina']);
    // Once the map has heard the change (within a second, as for a move): our 403, never the tenant.
    const disabled = performance.now();
    let cut = await request('/app/whoami', { cookie });
    while (cut.status === 200 && performance.now() - disabled < 2_000) cut = await request('/app/whoami', { cookie });
    expect(cut.status).toBe(403);
    expect(cut.body).toContain('plexer-error:403');
    expect(performance.now() - disabled).toBeLessThan(1_000);
    // AuthnCacheTimeout is 2 s here: then the authenticator itself refuses the session's password; until then
    // the map keeps refusing.
    await waitFor(
      async () => {
        const now = await request('/app/whoami', { cookie });
        expect(now.status === 403 || isLoginRedirect(now), `${now.status} ${now.location}`).toBe(true);
        return isLoginRedirect(now);
      },
      10_000,
      "the session's password to leave the cache (AuthnCacheTimeout 2 s)",
      200,
    );
  });
});
