// Guessing on the login page (issue "walls"): the form login handler checked posted passwords with
// mod_authn_socache first, which refuses a cached user's wrong password itself (uncounted until the log line
// after the answer) and had no lockout check at all: 67,249 wrong passwords were checked in 5 s from an
// address already locked, and the right one then got a working session. Now every posted password goes to
// `plexer authn`, which counts a refusal in the store before answering and refuses a locked user, address or
// pair without checking the password.
import { existsSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { formFieldSecret } from '../../src/apache/session-key.js';
import { cliOk, seedTwoTenants, startTestFront, type TestFront } from '../helpers/front.js';
import { waitFor } from '../helpers/wait.js';

const MAX_FAILURES = 4;
let t: TestFront;

interface Answer {
  status: number;
  location: string | null;
  cookie: string | null;
  body: string;
}

// A login post from the trusted proxy (127.0.0.1) on behalf of the client address `from`.
async function login(user: string, password: string, from: string): Promise<Answer> {
  const response = await fetch(`${t.front.httpd.url}/_plexer/form-login-handler`, {
    method: 'POST',
    headers: { 'content-type': 'application/x-www-form-urlencoded', 'x-forwarded-for': from },
    body: new URLSearchParams({ httpd_username: user, httpd_password: password }).toString(),
    redirect: 'manual',
  });
  const setCookie = response.headers.getSetCookie().find((c) => c.startsWith('plexer_session='));
  return {
    status: response.status,
    location: response.headers.get('location'),
    cookie: setCookie?.split(';')[0] ?? null,
    body: await response.text(),
  };
}

const failures = async (subject: string): Promise<number> =>
  (await t.store.sql.query('SELECT failures FROM login_failures WHERE subject = $1', [subject])).rows[0]?.failures ?? 0;

beforeAll(async () => {
  t = await startTestFront(seedTwoTenants, {
    configExtra: { lockout_max_failures: MAX_FAILURES, lockout_window_seconds: 600, lockout_seconds: 600 },
    front: { auth: 'form', extra: { trustedProxies: ['127.0.0.1'] } },
  });
}, 120_000);

afterAll(() => t?.close());

describe('guessing on the login page (real Apache, form login)', () => {
  it('counts every wrong password of a cached user in the store before it answers', async () => {
    // alice logs in: her password is now in the login cache.
    const ok = await login('alice', 'alice-pw', '10.80.0.1');
    expect(ok.status, ok.body).toBe(302);
    expect(ok.cookie).not.toBeNull();
    for (let i = 1; i < MAX_FAILURES; i++) {
      const refused = await login('alice', `guess-${i}`, '10.80.0.2');
      expect(refused.status).toBe(401);
      expect(refused.cookie).toBeNull();
      // Read right after the answer, no waiting: the count was made before it.
      expect(await failures('pair:alice/10.80.0.2')).toBe(i);
    }
  });

  it("once the pair is locked, the right password gets exactly the wrong one's answer, and no session", async () => {
    const last = await login('alice', 'guess-last', '10.80.0.2');
    expect(last.status).toBe(401);
    expect(await failures('pair:alice/10.80.0.2')).toBe(MAX_FAILURES);
    const wrong = await login('alice', 'still-wrong', '10.80.0.2');
    const right = await login('alice', 'alice-pw', '10.80.0.2');
    expect([right.status, right.location, right.cookie, right.body]).toEqual([wrong.status, wrong.location, wrong.cookie, wrong.body]);
    expect(right.status).toBe(401);
    // Refusals while locked count nothing more.
    expect(await failures('pair:alice/10.80.0.2')).toBe(MAX_FAILURES);
    // Her own address is not the guesser's: she still logs in there.
    expect((await login('alice', 'alice-pw', '10.80.0.1')).status).toBe(302);
  });

  it('a locked address gets our 429 for every post, before any password is checked', async () => {
    for (let i = 0; i < 3 * MAX_FAILURES; i++) await login(`nobody${i}`, 'x', '10.80.0.3');
    // The store's lockout reaches the lock file through plexer lockout's mirror (NOTIFY), milliseconds later.
    await waitFor(() => existsSync(join(t.front.lockDir, 'ip', '10.80.0.3')), 5_000, 'the address lock file');
    const answers = [await login('bob', 'bob-pw', '10.80.0.3'), await login('bob', 'wrong', '10.80.0.3')];
    expect(answers.map((a) => a.status)).toEqual([429, 429]);
    expect(answers[0]!.body).toBe(answers[1]!.body);
    await cliOk(t.cli, ['user', 'unlock', '--ip', '10.80.0.3']);
  });

  it('credentials posted to an application URL log nobody in: only the login page does (attack review)', async () => {
    // mod_auth_form takes httpd_username/httpd_password from a post to any protected URL; there they went to the
    // cache and authn --counted-by-log, and a refusal was a 302, which nothing counted: 12 wrong passwords, then
    // the right one got the user's page.
    const inline = (password: string) =>
      fetch(`${t.front.httpd.url}/app/whoami`, {
        method: 'POST',
        headers: { 'content-type': 'application/x-www-form-urlencoded', 'x-forwarded-for': '10.80.0.7' },
        body: new URLSearchParams({ httpd_username: 'bob', httpd_password: password }).toString(),
        redirect: 'manual',
      });
    for (let i = 0; i < 12; i++) expect((await inline(`wrong-${i}`)).status).toBe(302);
    const right = await inline('bob-pw');
    expect(right.status).toBe(302);
    expect(right.headers.get('location')).toBe('/_plexer/login/login.html');
    expect(await right.text()).not.toContain('"user": "bob"');
    // Through the login page she is in.
    expect((await login('bob', 'bob-pw', '10.80.0.7')).status).toBe(302);
  });

  it('inline credentials under the secret field names (tenant code can read them in its copy of Apache) are counted and locked out', async () => {
    const secret = formFieldSecret(join(t.front.apacheDir, 'session.key'));
    const inline = (password: string) =>
      fetch(`${t.front.httpd.url}/app/whoami`, {
        method: 'POST',
        headers: { 'content-type': 'application/x-www-form-urlencoded', 'x-forwarded-for': '10.80.0.9' },
        body: new URLSearchParams({ [`plexer-u-${secret}`]: 'alice', [`plexer-p-${secret}`]: password }).toString(),
        redirect: 'manual',
      });
    // The control: under these names the right password is taken (her page), so the guesses below are real ones.
    expect((await inline('alice-pw')).status).toBe(200);
    for (let i = 0; i < 2 * MAX_FAILURES; i++) expect((await inline(`wrong-${i}`)).status).toBe(302);
    // Each refusal (mod_auth_form's redirect to the login page) reaches plexer lockout from the log.
    await waitFor(async () => (await failures('pair:alice/10.80.0.9')) >= MAX_FAILURES, 5_000, 'the inline guesses counted');
    await waitFor(() => existsSync(join(t.front.lockDir, 'pair', '10.80.0.9', 'alice')), 5_000, 'the pair lock file');
    expect((await inline('alice-pw')).status).not.toBe(200);
  });
});
