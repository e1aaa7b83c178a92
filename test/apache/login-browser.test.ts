// The login page in a real browser (Debian's chromium driven by playwright-core) against a real Apache and
// PostgreSQL: where a login lands, what a foreign redirect target, a cross-site post and a frame get, and which
// copies of a session logout, disable and a password change end. Sessions are server-side (mod_session_dbd).
import { execFileSync } from 'node:child_process';
import { readFileSync } from 'node:fs';
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import { chromium, type Browser } from 'playwright-core';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { REPO_ROOT } from '../helpers/plexer.js';
import { cliOk, seedTwoTenants, startTestFront, type TestFront } from '../helpers/front.js';
import { waitFor } from '../helpers/wait.js';

let t: TestFront;
let browser: Browser;
let attacker: http.Server;
let attackerPage = '';
// Another site: "localhost" is cross-site to 127.0.0.1 for the browser, whatever the ports.
let attackerUrl = '';

const AUTH_CACHE_SECONDS = 2;

beforeAll(async () => {
  t = await startTestFront(
    async (cli) => {
      await seedTwoTenants(cli);
      await cliOk(cli, ['user', 'add', 'gina', '--group', 'tenant1', '--password-stdin'], 'gina-pw\n');
      await cliOk(cli, ['user', 'add', 'hank', '--group', 'tenant2', '--password-stdin'], 'hank-pw\n');
    },
    { front: { auth: 'form', authCacheTimeoutSeconds: AUTH_CACHE_SECONDS } },
  );
  attacker = http.createServer((_request, response) => {
    response.writeHead(200, { 'content-type': 'text/html' });
    response.end(attackerPage);
  });
  await new Promise<void>((resolve) => attacker.listen(0, '127.0.0.1', resolve));
  attackerUrl = `http://localhost:${(attacker.address() as AddressInfo).port}/`;
  browser = await chromium.launch({ executablePath: '/usr/bin/chromium', args: ['--no-sandbox'] });
}, 90_000);

afterAll(async () => {
  await browser?.close();
  await new Promise((resolve) => attacker?.close(resolve));
  await t?.close();
});

const front = () => t.front.httpd.url;

async function whoami(cookie: string): Promise<{ status: number; location: string | null; body: string }> {
  const response = await fetch(`${front()}/app/whoami`, { headers: { cookie }, redirect: 'manual' });
  return { status: response.status, location: response.headers.get('location'), body: await response.text() };
}

// Logs in through the page, as a person would; returns the browser context and a copy of its session cookie.
async function logIn(user: string, password = `${user}-pw`) {
  const context = await browser.newContext();
  const page = await context.newPage();
  await page.goto(`${front()}/app/whoami`);
  expect(page.url()).toBe(`${front()}/_plexer/login/login.html`);
  await page.fill('input[name=httpd_username]', user);
  await page.fill('input[name=httpd_password]', password);
  await Promise.all([page.waitForURL(`${front()}/app/`), page.click('button[type=submit]')]);
  const session = (await context.cookies()).find((c) => c.name === 'plexer_session');
  expect(session?.httpOnly).toBe(true);
  expect(session?.sameSite).toBe('Lax');
  return { context, page, cookie: `plexer_session=${session!.value}` };
}

describe('the login page in a real browser', () => {
  it("lands a login on the user's own instance", async () => {
    const { context, page, cookie } = await logIn('alice');
    await page.goto(`${front()}/app/whoami`);
    expect(JSON.parse(await page.innerText('body'))).toMatchObject({ user: 'alice', group: 'tenant1' });
    // The cookie holds a key, not the session: the row is in PostgreSQL, stored under the key's hash.
    expect(cookie).toMatch(/^plexer_session=[0-9a-f-]{36}$/);
    const rows = await t.store.sql.query('SELECT count(*)::int AS n FROM sessions');
    expect(rows.rows[0].n).toBeGreaterThan(0);
    await context.close();
  });

  it('ignores a foreign redirect target posted with the login', async () => {
    const context = await browser.newContext();
    const page = await context.newPage();
    await page.goto(`${front()}/_plexer/login/login.html`);
    await page.evaluate(() => {
      const field = document.createElement('input');
      field.type = 'hidden';
      field.name = 'httpd_location';
      field.value = 'https://evil.example/';
      document.querySelector('form')!.append(field);
    });
    await page.fill('input[name=httpd_username]', 'bob');
    await page.fill('input[name=httpd_password]', 'bob-pw');
    await Promise.all([page.waitForURL(`${front()}/app/`), page.click('button[type=submit]')]);
    await page.goto(`${front()}/app/whoami`);
    expect(JSON.parse(await page.innerText('body'))).toMatchObject({ user: 'bob', group: 'tenant2' });
    // Without a browser too: every Location the handler answers is one of ours.
    for (const target of ['https://evil.example/', '//evil.example/', '/\\evil.example/', '/_plexer/login/login.html?x', '/app/../x']) {
      const response = await fetch(`${front()}/_plexer/form-login-handler`, {
        method: 'POST',
        redirect: 'manual',
        headers: { 'content-type': 'application/x-www-form-urlencoded' },
        body: new URLSearchParams({ httpd_username: 'bob', httpd_password: 'bob-pw', httpd_location: target }).toString(),
      });
      expect(response.status, target).toBe(302);
      expect(response.headers.get('location'), target).toBe(`${front()}/app/`);
    }
    await context.close();
  });

  it('refuses a login posted from another site (login CSRF)', async () => {
    attackerPage = `<!DOCTYPE html><form method="post" action="${front()}/_plexer/form-login-handler">
      <input name="httpd_username" value="hank"><input name="httpd_password" value="hank-pw"></form>
      <script>document.forms[0].submit()</script>`;
    const context = await browser.newContext();
    const page = await context.newPage();
    const answer = page.waitForResponse((r) => r.url() === `${front()}/_plexer/form-login-handler`);
    await page.goto(attackerUrl);
    expect((await answer).status()).toBe(403);
    await page.waitForLoadState();
    expect(await page.content()).toContain('plexer-error:403');
    // No session was made: the victim's browser is not logged in as hank.
    expect((await context.cookies()).filter((c) => c.name === 'plexer_session' && c.value !== '')).toEqual([]);
    await page.goto(`${front()}/app/whoami`);
    expect(page.url()).toBe(`${front()}/_plexer/login/login.html`);
    // The same form posted from our own page logs in: only the origin made the difference.
    await page.goto(`${front()}/_plexer/login/login.html`);
    await page.fill('input[name=httpd_username]', 'hank');
    await page.fill('input[name=httpd_password]', 'hank-pw');
    await Promise.all([page.waitForURL(`${front()}/app/`), page.click('button[type=submit]')]);
    await context.close();
  });

  it('refuses to be framed by another site', async () => {
    // /403.html is served from DocumentRoot, outside /_plexer/: the control that a frame does load here.
    attackerPage = `<!DOCTYPE html><iframe id="login" src="${front()}/_plexer/login/login.html"></iframe>
      <iframe id="control" src="${front()}/403.html"></iframe>`;
    const context = await browser.newContext();
    const page = await context.newPage();
    const loginAnswer = page.waitForResponse((r) => r.url() === `${front()}/_plexer/login/login.html`);
    await page.goto(attackerUrl);
    const headers = (await loginAnswer).headers();
    expect(headers['x-frame-options']).toBe('DENY');
    expect(headers['content-security-policy']).toBe("frame-ancestors 'none'");
    const frameText = async (id: string) => {
      const frame = await (await page.$(`#${id}`))!.contentFrame();
      return frame ? frame.evaluate(() => document.documentElement.outerHTML).catch(() => '') : '';
    };
    await waitFor(async () => (await frameText('control')).includes('plexer-error:403'), 10_000, 'the control frame to load');
    expect(await frameText('login')).not.toContain('plexer-login-page');
    await context.close();
  });

  it('ends every copy of a session at logout', async () => {
    const { context, page, cookie } = await logIn('alice');
    expect(JSON.parse((await whoami(cookie)).body)).toMatchObject({ user: 'alice' });
    await page.goto(`${front()}/_plexer/logout`);
    expect(page.url()).toBe(`${front()}/_plexer/login/login.html?logged-out=1`);
    const copy = await whoami(cookie);
    expect(copy.status).toBe(302);
    expect(copy.location).toBe('/_plexer/login/login.html');
    await context.close();
  });

  it('writes one audit line per login success and failure, which the fail2ban filter apache/LOGINS.md shows matches', async () => {
    const logFile = `${t.front.apacheDir}/login.log`;
    const refused = await fetch(`${front()}/_plexer/form-login-handler`, {
      method: 'POST',
      redirect: 'manual',
      headers: { 'content-type': 'application/x-www-form-urlencoded' },
      body: new URLSearchParams({ httpd_username: 'alice', httpd_password: 'wrong' }).toString(),
    });
    expect(refused.status).toBe(401);
    // A hostile user name cannot forge an address: Apache escapes its quotes, the address comes first.
    const forged = 'x" ip=203.0.113.9 user="y';
    await fetch(`${front()}/_plexer/form-login-handler`, {
      method: 'POST',
      redirect: 'manual',
      headers: { 'content-type': 'application/x-www-form-urlencoded' },
      body: new URLSearchParams({ httpd_username: forged, httpd_password: 'wrong' }).toString(),
    });
    const lines = await waitFor(
      () => {
        const text = readFileSync(logFile, 'utf8');
        return text.includes('plexer-login failed ip=127.0.0.1 user="alice"') && text.includes('203.0.113.9')
          ? text.trim().split('\n')
          : null;
      },
      5_000,
      'the failed logins in the audit log',
    );
    const line = /^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d[+-]\d{4} plexer-login (ok|failed) ip=127\.0\.0\.1 user="(.*)"$/;
    for (const l of lines) expect(l).toMatch(line);
    const outcomes = lines.map((l) => `${line.exec(l)![1]} ${line.exec(l)![2]}`);
    // The earlier tests' logins through the page (ok) and the two refusals here (failed); hank logged in once,
    // from our page: the cross-site post was refused before any login.
    expect(outcomes).toEqual(expect.arrayContaining(['ok alice', 'ok bob', 'failed alice']));
    expect(outcomes.filter((o) => o.startsWith('failed'))).toHaveLength(2);
    expect(outcomes.filter((o) => o === 'ok hank')).toHaveLength(1);
    // The filter the docs show is the one that ships (and that fail2ban-regex runs here).
    const filter = `${REPO_ROOT}/apache/fail2ban/plexer-login.conf`;
    const shown = /```ini\n(\[Definition\]\n[\s\S]*?)```/.exec(readFileSync(`${REPO_ROOT}/apache/LOGINS.md`, 'utf8'))?.[1];
    expect(shown).toMatch(/^failregex = /m);
    expect(readFileSync(filter, 'utf8')).toContain(shown);
    const matched = execFileSync('fail2ban-regex', ['--out', 'ip', logFile, filter], { encoding: 'utf8' });
    expect(matched.trim().split('\n')).toEqual(['127.0.0.1', '127.0.0.1']);
  });

  it('ends a copied session when the user is disabled, and when the password changes', async () => {
    const gina = await logIn('gina');
    expect((await whoami(gina.cookie)).status).toBe(200);
    await cliOk(t.cli, ['user', 'disable', 'gina']);
    // The map refuses a disabled user at once: our 403, never the instance.
    await waitFor(async () => (await whoami(gina.cookie)).status === 403, 2_000, 'our 403 for disabled gina');
    await gina.context.close();

    const bob = await logIn('bob');
    expect((await whoami(bob.cookie)).status).toBe(200);
    await cliOk(t.cli, ['user', 'passwd', 'bob', '--password-stdin'], 'bob-new-pw\n');
    // The session carries the old password, which the authenticator now refuses: once the cache forgets it
    // (AuthnCacheTimeout), the copy leads to the login page.
    await waitFor(async () => (await whoami(bob.cookie)).status === 302, (AUTH_CACHE_SECONDS + 3) * 1000, "bob's old session to end");
    expect((await whoami(bob.cookie)).location).toBe('/_plexer/login/login.html');
    await bob.context.close();
  });
});
