// Prefix routing (routing: 'prefix') against a real Apache: /app/x is rewritten internally to /u/USER/app/x,
// the prefix comes from the authenticated user only, and another user's prefix is refused.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { cliOk, seedTwoTenants, startTestFront, type TestFront } from '../helpers/front.js';

let t: TestFront;

beforeAll(async () => {
  t = await startTestFront(
    async (cli) => {
      await seedTwoTenants(cli);
      await cliOk(cli, ['user', 'add', 'dave', '--group', 'none', '--password-stdin'], 'dave-pw\n');
    },
    { front: { routing: 'prefix', authCacheTimeoutSeconds: 30 } },
  );
}, 60_000);

afterAll(async () => {
  await t?.close();
});

const as = (user: string, path: string, headers: Record<string, string> = {}) => t.get(path, { user, password: `${user}-pw`, headers });

describe('prefix routing: a per-user URL namespace from the authenticated user only', () => {
  it("serves /app/x from /u/USER/app/x of the user's own group", async () => {
    expect((await t.get('/app/whoami')).status).toBe(401);
    const alice = await as('alice', '/app/whoami?x=1');
    expect(alice.status, alice.body).toBe(200);
    // Served by the internal /u/alice/app/whoami request (REDIRECT_URL names the URL it came from); mod_wsgi
    // derives SCRIPT_NAME from the URL the client asked for, so the application still generates /app/… links.
    expect(alice.json()).toMatchObject({
      group: 'tenant1',
      user: 'alice',
      redirect_url: '/app/whoami',
      script_name: '/app',
      path: '/app/whoami',
    });
    const bob = await as('bob', '/app/whoami');
    expect(bob.json()).toMatchObject({ group: 'tenant2', user: 'bob', redirect_url: '/app/whoami' });
  });

  it("serves the own prefix directly and refuses another user's with our 403", async () => {
    const own = await as('alice', '/u/alice/app/whoami');
    expect(own.status).toBe(200);
    expect(own.json()).toMatchObject({ group: 'tenant1', user: 'alice', redirect_url: null, script_name: '/u/alice/app' });
    for (const path of ['/u/bob/app/whoami', '/u/bob/app', '/u/Alice/app/whoami', '/u/alice2/app/whoami', '/u/ali/app/whoami']) {
      const r = await as('alice', path);
      expect(r.status, path).toBe(403);
      expect(r.body).toContain('plexer-error:403');
    }
    expect((await t.get('/u/bob/app/whoami')).status).toBe(401);
  });

  it("lets no header, query, encoding or dot-segment trick reach another user's prefix", async () => {
    const forged = await as('alice', '/app/whoami?user=bob', { 'X-Remote-User': 'bob', 'Remote-User': 'bob', Cookie: 'user=bob' });
    expect(forged.json()).toMatchObject({ group: 'tenant1', user: 'alice' });
    for (const path of [
      '/app/../u/bob/app/whoami',
      '/app/%2e%2e/%2e%2e/u/bob/app/whoami',
      '/app/%252e%252e/%252e%252e/%252e%252e/u/bob/app/whoami',
      '/u/alice/app/../../bob/app/whoami',
      '/u/alice/app/%2e%2e/%2e%2e/bob/app/whoami',
      '/u/alice/../bob/app/whoami',
      '/u/bob%2fx/app/whoami',
    ]) {
      const r = await as('alice', path);
      if (r.status === 200) expect(r.json(), path).toMatchObject({ group: 'tenant1', user: 'alice' });
      else expect([400, 403, 404], `${path}: ${r.status}`).toContain(r.status);
    }
  });

  it('gives a user without a group our 403, also under their own prefix', async () => {
    expect((await as('dave', '/app/whoami')).status).toBe(403);
    expect((await as('dave', '/u/dave/app/whoami')).status).toBe(403);
  });
});
