// `plexer authd` behind a real Apache (Debian's apache2 + mod_authnz_fcgi), with a real store.
import { spawn, type ChildProcessWithoutNullStreams } from 'node:child_process';
import { chmodSync, mkdirSync, mkdtempSync, writeFileSync } from 'node:fs';
import http from 'node:http';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import pg from 'pg';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { freePort, startHttpd, type Httpd } from './helpers/httpd.js';
import { freshStore, PLEXER_BIN, runPlexer, type TestStore } from './helpers/plexer.js';

const MODULES = '/usr/lib/apache2/modules';

let store: TestStore;
let httpd: Httpd;
let authd: ChildProcessWithoutNullStreams;
let authdLog = '';

function apacheConfig(dir: string, port: number, authdPort: number): string {
  return [
    `ServerRoot "${dir}"`,
    `DefaultRuntimeDir "${dir}"`,
    `PidFile "${dir}/httpd.pid"`,
    `Mutex file:${dir} default`,
    `ErrorLog "${dir}/error.log"`,
    'LogLevel warn',
    ...['mpm_event', 'authz_core', 'authz_user', 'authn_core', 'auth_basic', 'authnz_fcgi', 'setenvif'].map(
      (m) => `LoadModule ${m}_module ${MODULES}/mod_${m}.so`,
    ),
    'User www-data',
    'Group www-data',
    `Listen 127.0.0.1:${port}`,
    'ServerName localhost',
    `DocumentRoot "${dir}/www"`,
    'KeepAlive On',
    `<Directory "${dir}/www">`,
    '  Require all granted',
    '</Directory>',
    `AuthnzFcgiDefineProvider authn plexer fcgi://127.0.0.1:${authdPort}/`,
    `AuthnzFcgiDefineProvider authz plexer-roles fcgi://127.0.0.1:${authdPort}/`,
    '<Location /private>',
    '  AuthType Basic',
    '  AuthName "plexer"',
    '  AuthBasicProvider plexer',
    '  Require valid-user',
    '</Location>',
    '<Location /admin>',
    '  AuthType Basic',
    '  AuthName "plexer"',
    '  AuthBasicProvider plexer',
    // mod_authnz_fcgi rejects "Require plexer-roles admins" at config time: the roles travel as a variable.
    '  SetEnvIf Request_URI ^ PLEXER_ROLES=admins',
    '  Require plexer-roles',
    '  AuthzSendForbiddenOnFailure On',
    '</Location>',
    '<Location /norole>',
    '  AuthType Basic',
    '  AuthName "plexer"',
    '  AuthBasicProvider plexer',
    '  Require plexer-roles',
    '  AuthzSendForbiddenOnFailure On',
    '</Location>',
    '',
  ].join('\n');
}

interface Answer {
  status: number;
  body: string;
  ms: number;
}

const agent = new http.Agent({ keepAlive: true, maxSockets: 8 });

function get(path: string, user?: string, password?: string): Promise<Answer> {
  return new Promise((resolve, reject) => {
    const start = performance.now();
    const headers: Record<string, string> = {};
    if (user !== undefined) headers.authorization = `Basic ${Buffer.from(`${user}:${password ?? ''}`).toString('base64')}`;
    const request = http.get({ host: '127.0.0.1', port: httpd.port, path, headers, agent }, (response) => {
      let body = '';
      response.setEncoding('utf8');
      response.on('data', (d) => (body += d));
      response.on('end', () => resolve({ status: response.statusCode ?? 0, body, ms: performance.now() - start }));
    });
    request.on('error', reject);
    request.setTimeout(10_000, () => request.destroy(new Error('request timed out')));
  });
}

// Polls until `path` answers `status`; returns how long the change took to show.
async function waitForStatus(path: string, user: string, password: string, status: number, limitMs = 1_000): Promise<number> {
  const start = performance.now();
  for (;;) {
    const answer = await get(path, user, password);
    const elapsed = performance.now() - start;
    if (answer.status === status) return elapsed;
    if (elapsed > limitMs) throw new Error(`${path} still answers ${answer.status} for ${user} after ${limitMs} ms (wanted ${status})\n${authdLog}`);
    await new Promise((r) => setTimeout(r, 10));
  }
}

const plexer = async (args: string[], input?: string) => {
  const result = await runPlexer(args, { configPath: store.configPath, ...(input !== undefined ? { input } : {}) });
  expect(result.code, `plexer ${args.join(' ')}: ${result.stderr}`).toBe(0);
  return result;
};

function startAuthd(port: number): Promise<void> {
  authd = spawn(process.execPath, [PLEXER_BIN, 'authd', '--listen', `127.0.0.1:${port}`, '--config', store.configPath], { env: {}, cwd: '/' });
  authd.stdout.resume();
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`authd did not start:\n${authdLog}`)), 15_000);
    authd.stderr.on('data', (d) => {
      authdLog += d;
      if (/ authd info: listening /.test(authdLog)) {
        clearTimeout(timer);
        resolve();
      }
    });
    authd.on('exit', (code) => reject(new Error(`authd exited with ${code}:\n${authdLog}`)));
  });
}

beforeAll(async () => {
  // Lockout is on (as in production) with room for the failures these tests make from 127.0.0.1.
  store = await freshStore('cache_ttl_ms = 300000\nlockout_max_failures = 100');
  await plexer(['group', 'add', 't1']);
  for (const [name, password] of [['alice', 'pw-alice'], ['bob', 'pw-bob'], ['carol', 'pw-carol'], ['dora', 'pw-dora'], ['erin', 'pw-erin']]) {
    await plexer(['user', 'add', name!, '--group', 't1', '--password-stdin'], `${password}\n`);
  }
  await plexer(['user', 'disable', 'dora']);
  await plexer(['user', 'grant', 'alice', 'admins']);

  const authdPort = await freePort();
  await startAuthd(authdPort);

  const dir = mkdtempSync(join(tmpdir(), 'plexer-authd-httpd-'));
  chmodSync(dir, 0o755);
  for (const sub of ['private', 'admin', 'norole']) {
    mkdirSync(join(dir, 'www', sub), { recursive: true });
    writeFileSync(join(dir, 'www', sub, 'page.txt'), `${sub} content\n`);
  }
  chmodSync(join(dir, 'www'), 0o755);
  for (const sub of ['private', 'admin', 'norole']) chmodSync(join(dir, 'www', sub), 0o755);
  httpd = await startHttpd({ config: apacheConfig(dir, await freePort(), authdPort), dir });
}, 60_000);

afterAll(async () => {
  agent.destroy();
  await httpd?.stop();
  if (authd && authd.exitCode === null) {
    const exited = new Promise((r) => authd.once('exit', r));
    authd.kill('SIGTERM');
    await exited;
  }
  await store?.close();
});

describe('plexer authd behind mod_authnz_fcgi', () => {
  it('accepts only an existing, enabled user with the right password', async () => {
    const ok = await get('/private/page.txt', 'alice', 'pw-alice');
    expect(ok.status).toBe(200);
    expect(ok.body).toBe('private content\n');
    expect((await get('/private/page.txt', 'alice', 'wrong')).status).toBe(401);
    expect((await get('/private/page.txt', 'nobody', 'pw-alice')).status).toBe(401);
    expect((await get('/private/page.txt', 'dora', 'pw-dora')).status).toBe(401);
    expect((await get('/private/page.txt', 'ali ce', 'pw-alice')).status).toBe(401);
    expect((await get('/private/page.txt')).status).toBe(401);
    // A cached success must not make a wrong password pass.
    expect((await get('/private/page.txt', 'alice', 'pw-alice')).status).toBe(200);
    expect((await get('/private/page.txt', 'alice', 'pw-alice ')).status).toBe(401);
    expect(authdLog).toMatch(/login refused reason=wrong-password user=alice ip=127\.0\.0\.1/);
    expect(authdLog).toMatch(/login refused reason=no-such-user user=nobody/);
    expect(authdLog).toMatch(/login refused reason=disabled user=dora/);
    expect(authdLog).not.toContain('pw-alice');
  });

  it('takes a password change into account on the next request (NOTIFY drops the cached credential)', async () => {
    expect((await get('/private/page.txt', 'bob', 'pw-bob')).status).toBe(200);
    expect((await get('/private/page.txt', 'bob', 'pw-bob')).status).toBe(200); // cached now
    await plexer(['user', 'passwd', 'bob', '--password-stdin'], 'pw-bob-2\n');
    const ms = await waitForStatus('/private/page.txt', 'bob', 'pw-bob', 401);
    console.log(`password change visible after ${ms.toFixed(1)} ms`);
    expect((await get('/private/page.txt', 'bob', 'pw-bob-2')).status).toBe(200);
  });

  it('takes a disable into account on the next request, and an enable', async () => {
    expect((await get('/private/page.txt', 'carol', 'pw-carol')).status).toBe(200);
    expect((await get('/private/page.txt', 'carol', 'pw-carol')).status).toBe(200);
    await plexer(['user', 'disable', 'carol']);
    const ms = await waitForStatus('/private/page.txt', 'carol', 'pw-carol', 401);
    console.log(`disable visible after ${ms.toFixed(1)} ms`);
    await plexer(['user', 'enable', 'carol']);
    await waitForStatus('/private/page.txt', 'carol', 'pw-carol', 200);
  });

  it('takes a deleted user into account on the next request', async () => {
    expect((await get('/private/page.txt', 'erin', 'pw-erin')).status).toBe(200);
    await plexer(['user', 'del', 'erin']);
    await waitForStatus('/private/page.txt', 'erin', 'pw-erin', 401);
  });

  it('checks roles named by PLEXER_ROLES: 200 with the role, 403 without, and follows grant/revoke', async () => {
    expect((await get('/admin/page.txt', 'alice', 'pw-alice')).status).toBe(200);
    expect((await get('/admin/page.txt', 'carol', 'pw-carol')).status).toBe(403);
    expect((await get('/admin/page.txt', 'carol', 'wrong')).status).toBe(401);
    await plexer(['user', 'grant', 'carol', 'admins']);
    await waitForStatus('/admin/page.txt', 'carol', 'pw-carol', 200);
    await plexer(['user', 'revoke', 'carol', 'admins']);
    await waitForStatus('/admin/page.txt', 'carol', 'pw-carol', 403);
  });

  it('refuses a role check where no roles were configured (fail closed)', async () => {
    expect((await get('/norole/page.txt', 'alice', 'pw-alice')).status).toBe(403);
    expect(authdLog).toMatch(/role check refused: no PLEXER_ROLES/);
  });

  it('refuses a cached credential while the user is locked out', async () => {
    expect((await get('/private/page.txt', 'alice', 'pw-alice')).status).toBe(200);
    // Its own short-lived connection: the helper's pool would be left with an idle client that the database's
    // drop at the end terminates.
    const client = new pg.Client({ connectionString: store.db.url, options: '-c search_path=plexer' });
    await client.connect();
    await client.query(`INSERT INTO login_failures (subject, failures, locked_until) VALUES ('user:alice', 100, now() + interval '1 hour')`);
    await client.end();
    expect((await get('/private/page.txt', 'alice', 'pw-alice')).status).toBe(401);
    expect(authdLog).toMatch(/login refused reason=locked-out user=alice/);
    await plexer(['user', 'unlock', 'alice']);
    expect((await get('/private/page.txt', 'alice', 'pw-alice')).status).toBe(200);
  });

  it('measures request latency through Apache: cold (bcrypt) vs warm (cached)', async () => {
    await plexer(['user', 'add', 'mallory', '--group', 't1', '--password-stdin'], 'pw-mallory\n');
    const cold: number[] = [];
    const warm: number[] = [];
    for (let i = 0; i < 30; i++) {
      // A changed password empties the cache entry: the next request verifies again.
      cold.push((await get('/private/page.txt', 'mallory', `wrong-${i}`)).ms);
    }
    for (let i = 0; i < 200; i++) warm.push((await get('/private/page.txt', 'mallory', 'pw-mallory')).ms);
    const p = (xs: number[], q: number) => [...xs].sort((a, b) => a - b)[Math.floor(q * (xs.length - 1))]!;
    console.log(`Apache + authd, bcrypt_cost=4: refused (bcrypt each time) p50 ${p(cold, 0.5).toFixed(2)} ms; ` +
      `cached success p50 ${p(warm, 0.5).toFixed(2)} ms p99 ${p(warm, 0.99).toFixed(2)} ms`);
    expect(p(warm, 0.5)).toBeLessThan(50);
  });

  it('left no errors from mod_authnz_fcgi in the error log', () => {
    // Refusals are logged by authz_core/auth_basic; mod_authnz_fcgi itself logs only mechanical problems.
    expect(httpd.errorLog()).not.toMatch(/\[authnz_fcgi:(error|crit|warn)\]/);
  });

  it('stops on SIGTERM', async () => {
    const exited = new Promise<number | null>((r) => authd.once('exit', (code) => r(code)));
    authd.kill('SIGTERM');
    expect(await exited).toBe(0);
    expect(authdLog).toMatch(/authd info: stopping signal=SIGTERM/);
  });
});
