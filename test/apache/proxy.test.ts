// Proxy routing (routing: 'proxy') against a real Apache: each user is proxied to their daemon group's `backend`
// (map backend) — a unix-socket HTTP server, a TCP HTTP server or a FastCGI responder — and never elsewhere.
import { chmodSync, mkdtempSync, rmSync } from 'node:fs';
import http from 'node:http';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startFcgiBackend, startHttpBackend, type Backend } from '../helpers/backends.js';
import { cliOk, startTestFront, type TestFront } from '../helpers/front.js';
import { waitFor } from '../helpers/wait.js';

let t: TestFront;
let sockets: string;
const backends: Record<string, Backend> = {};

beforeAll(async () => {
  sockets = mkdtempSync('/tmp/pxb-');
  chmodSync(sockets, 0o755);
  backends.alice = await startHttpBackend('alice-backend', { socketPath: join(sockets, 'alice.sock') });
  backends.bob = await startHttpBackend('bob-backend', 'tcp');
  backends.carol = await startFcgiBackend('carol-backend', join(sockets, 'carol.sock'));
  backends.dan = await startHttpBackend('dan-backend', { socketPath: join(sockets, 'dan.sock') });
  t = await startTestFront(
    async (cli) => {
      await cliOk(cli, ['group', 'add', 'ta', '--backend', backends.alice!.target]);
      await cliOk(cli, ['group', 'add', 'tb', '--backend', backends.bob!.target]);
      await cliOk(cli, ['group', 'add', 'tc', '--backend', backends.carol!.target]);
      await cliOk(cli, ['group', 'add', 'td', '--backend', backends.dan!.target]);
      await cliOk(cli, ['group', 'add', 'tnone']);
      // Not a shape the proxy rule accepts (mod_proxy_uwsgi is not loaded): the CLI refuses it, and a row written
      // with psql (the store's CHECK allows the scheme) is answered 503 — set below.
      const refused = await cli(['group', 'add', 'tbad', '--backend', 'uwsgi://127.0.0.1:9/']);
      expect(refused.code).toBe(2);
      expect(refused.stderr).toMatch(/unsupported backend "uwsgi:\/\/127\.0\.0\.1:9\/".*route no other scheme/);
      await cliOk(cli, ['group', 'add', 'tbad']);
      for (const [user, group] of [
        ['alice', 'ta'],
        ['bob', 'tb'],
        ['carol', 'tc'],
        ['dan', 'td'],
        ['nina', 'tnone'],
        ['bert', 'tbad'],
      ]) {
        await cliOk(cli, ['user', 'add', user!, '--group', group!, '--password-stdin'], `${user}-pw\n`);
      }
      await cliOk(cli, ['user', 'add', 'dave', '--group', 'none', '--password-stdin'], 'dave-pw\n');
    },
    { front: { routing: 'proxy', authCacheTimeoutSeconds: 30 } },
  );
  await t.store.sql.query("UPDATE daemon_groups SET backend = 'uwsgi://127.0.0.1:9/' WHERE name = 'tbad'");
}, 60_000);

afterAll(async () => {
  await t?.close();
  for (const b of Object.values(backends)) await b.stop().catch(() => {});
  rmSync(sockets, { recursive: true, force: true });
});

const as = (user: string, path: string, headers: Record<string, string> = {}) => t.get(path, { user, password: `${user}-pw`, headers });

describe('proxy routing: each user reaches only their own backend', () => {
  it('needs authentication', async () => {
    expect((await t.get('/app/whoami')).status).toBe(401);
    expect((await t.get('/app/whoami', { user: 'alice', password: 'wrong' })).status).toBe(401);
  });

  it('sends alice to her unix-socket HTTP backend, with the path below the mount and the query string', async () => {
    const r = await as('alice', '/app/whoami/x?a=1&b=2');
    expect(r.status, r.body).toBe(200);
    expect(r.json()).toMatchObject({ tenant: 'alice-backend', kind: 'http', path: '/whoami/x', query: '?a=1&b=2', user: 'alice' });
    // The password never reaches a backend.
    expect(r.json().headers.authorization).toBeUndefined();
  });

  it('sends bob to his TCP backend and carol to her FastCGI socket backend', async () => {
    const bob = await as('bob', '/app/whoami');
    expect(bob.status, bob.body).toBe(200);
    expect(bob.json()).toMatchObject({ tenant: 'bob-backend', kind: 'http', user: 'bob' });
    const carol = await as('carol', '/app/whoami?q=1');
    expect(carol.status, carol.body).toBe(200);
    expect(carol.json()).toMatchObject({ tenant: 'carol-backend', kind: 'fcgi', remoteUser: 'carol', user: 'carol', query: 'q=1' });
    expect(carol.json().headers.HTTP_AUTHORIZATION).toBeUndefined();
  });

  it('gives users without a backend our 403 and an unaccepted backend shape our 503', async () => {
    for (const user of ['dave', 'nina']) {
      const r = await as(user, '/app/whoami');
      expect(r.status, user).toBe(403);
      expect(r.body).toContain('plexer-error:403');
    }
    const bert = await as('bert', '/app/whoami');
    expect(bert.status).toBe(503);
    expect(bert.body).toContain('plexer-error:503');
  });

  it('lets no header, cookie, query or path choose the backend or the user the backend sees', async () => {
    const forged = await as('alice', '/app/whoami?backend=http://127.0.0.1:1/&PLEXER_BACKEND=x', {
      'X-Plexer-User': 'bob',
      X_Plexer_User: 'bob',
      'X-Plexer_User': 'bob',
      'X-Remote-User': 'bob',
      'Remote-User': 'bob',
      'Plexer-Backend': backends.bob!.target,
      Cookie: 'PLEXER_BACKEND=x; backend=x',
      Host: '127.0.0.1',
    });
    expect(forged.status, forged.body).toBe(200);
    expect(forged.json()).toMatchObject({ tenant: 'alice-backend', user: 'alice' });
    // Our header carries the authenticated user; the client's copies (also with "_" for "-") are gone.
    const seen = forged.json().headers as Record<string, string>;
    expect(seen['x-plexer-user']).toBe('alice');
    expect(Object.keys(seen).filter((k) => /^x[-_]plexer[-_]user$/i.test(k))).toEqual(['x-plexer-user']);
    // Path tricks stay below alice's own backend.
    for (const path of ['/app/..%2f..%2fwhoami', '/app//127.0.0.1:1/x', '/app/@evil/x', '/app/%2e%2e/%2e%2e/x']) {
      const r = await as('alice', path);
      if (r.status === 200) expect(r.json().tenant, path).toBe('alice-backend');
      else expect([400, 403, 404], `${path}: ${r.status}`).toContain(r.status);
    }
    // Carol's FastCGI backend gets REMOTE_USER from authentication; headers arrive only as HTTP_*.
    const carol = await as('carol', '/app/whoami', { 'X-Plexer-User': 'alice', 'Remote-User': 'alice', X_Plexer_User: 'alice' });
    expect(carol.json()).toMatchObject({ tenant: 'carol-backend', remoteUser: 'carol', user: 'carol' });
  });

  it("sends each backend its own group's token, which no client can set, and a rotated one at the next request", async () => {
    const token = async (group: string) => (await cliOk(t.cli, ['group', 'token', group])).stdout.trim();
    const [ta, tb, tc] = [await token('ta'), await token('tb'), await token('tc')];
    expect(ta).toMatch(/^[0-9a-f]{32}$/);
    expect(new Set([ta, tb, tc]).size).toBe(3);
    const alice = await as('alice', '/app/whoami', { 'X-Plexer-Token': tb, X_Plexer_Token: tb });
    expect(alice.json().tenant).toBe('alice-backend');
    const seen = alice.json().headers as Record<string, string>;
    expect(seen['x-plexer-token']).toBe(ta);
    expect(Object.keys(seen).filter((k) => /^x[-_]plexer[-_]token$/i.test(k))).toEqual(['x-plexer-token']);
    expect((await as('bob', '/app/whoami')).json().headers['x-plexer-token']).toBe(tb);
    // FastCGI: as a header and as the variable PLEXER_BACKEND_TOKEN.
    const carol = (await as('carol', '/app/whoami')).json();
    expect([carol.headers.HTTP_X_PLEXER_TOKEN, carol.env.PLEXER_BACKEND_TOKEN]).toEqual([tc, tc]);
    // Rotated: the backend sees the new one at once (the change reaches the map through NOTIFY), no reload.
    const rotated = (await cliOk(t.cli, ['group', 'token', 'ta', '--rotate'])).stdout.trim();
    expect(rotated).not.toBe(ta);
    await waitFor(async () => (await as('alice', '/app/whoami')).json().headers['x-plexer-token'] === rotated, 5_000, 'the new token');
  });

  it("a client's Connection header cannot strip the user header on the way to the backend", async () => {
    // mod_proxy drops the request headers named in Connection; the rules drop the client's Connection first.
    const seen = await new Promise<Record<string, string>>((resolve, reject) => {
      const request = http.get(
        {
          host: '127.0.0.1',
          port: t.front.httpd.port,
          path: '/app/whoami',
          agent: false,
          headers: { authorization: `Basic ${Buffer.from('alice:alice-pw').toString('base64')}`, connection: 'X-Plexer-User, close' },
        },
        (response) => {
          let body = '';
          response.on('data', (chunk) => (body += chunk));
          response.on('end', () =>
            response.statusCode === 200 ? resolve(JSON.parse(body).headers) : reject(new Error(`${response.statusCode} ${body}`)),
          );
        },
      );
      request.on('error', reject);
    });
    expect(seen['x-plexer-user']).toBe('alice');
  });

  it('gives the user of a backend that is down our 503, never another backend, and recovers at once', async () => {
    expect((await as('dan', '/app/whoami')).json().tenant).toBe('dan-backend');
    await backends.dan!.stop();
    for (let i = 0; i < 3; i++) {
      const r = await as('dan', '/app/whoami');
      expect(r.status).toBe(503);
      expect(r.body).toContain('plexer-error:503');
    }
    // The others are unaffected (the failure is not pinned on a shared worker).
    expect((await as('alice', '/app/whoami')).json().tenant).toBe('alice-backend');
    expect((await as('bob', '/app/whoami')).json().tenant).toBe('bob-backend');
    backends.dan = await startHttpBackend('dan-backend', { socketPath: join(sockets, 'dan.sock') });
    const back = await as('dan', '/app/whoami');
    expect(back.status, back.body).toBe(200);
    expect(back.json().tenant).toBe('dan-backend');
  });

  it('follows a move to another group at the next request, without a reload', async () => {
    await cliOk(t.cli, ['user', 'move', 'bob', '--group', 'ta']);
    const deadline = Date.now() + 2_000;
    let tenant = '';
    while (tenant !== 'alice-backend' && Date.now() < deadline) tenant = (await as('bob', '/app/whoami')).json().tenant;
    expect(tenant).toBe('alice-backend');
    await cliOk(t.cli, ['user', 'disable', 'bob']);
    const disabledBy = Date.now() + 2_000;
    let status = 200;
    while (status === 200 && Date.now() < disabledBy) status = (await as('bob', '/app/whoami')).status;
    expect(status).toBe(403);
  });
});
