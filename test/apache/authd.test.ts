// `plexer authd` behind a real Apache (Debian's apache2 + mod_authnz_fcgi), with a real store.
import { execFileSync, spawn, type ChildProcessWithoutNullStreams } from 'node:child_process';
import { chmodSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import http from 'node:http';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import pg from 'pg';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { authorizerRequest, type AuthorizerAnswer } from '../../src/fastcgi/client.js';
import { freePort, startHttpd, type Httpd } from '../helpers/httpd.js';
import { freshStore, PLEXER_BIN, runPlexer, type TestStore } from '../helpers/plexer.js';
import { waitFor } from '../helpers/wait.js';

const MODULES = '/usr/lib/apache2/modules';

let store: TestStore;
let httpd: Httpd;
let authd: ChildProcessWithoutNullStreams;
let authdLog = '';
let authdPort: number;
let dir: string;
let secretFile: string;
let secret: string;

function apacheConfig(dir: string, port: number, authdPort: number): string {
  return [
    `ServerRoot "${dir}"`,
    `DefaultRuntimeDir "${dir}"`,
    `PidFile "${dir}/httpd.pid"`,
    `Mutex file:${dir} default`,
    `ErrorLog "${dir}/error.log"`,
    'LogLevel warn',
    ...['mpm_event', 'authz_core', 'authz_user', 'authn_core', 'auth_basic', 'authnz_fcgi', 'setenvif', 'rewrite', 'dir', 'include'].map(
      (m) => `LoadModule ${m}_module ${MODULES}/mod_${m}.so`,
    ),
    'User www-data',
    'Group www-data',
    `Listen 127.0.0.1:${port}`,
    'ServerName localhost',
    `DocumentRoot "${dir}/www"`,
    'KeepAlive On',
    // As documented in `plexer authd --help`: the secret travels in the request's environment during
    // authentication only.
    `Include "${dir}/authd-secret.conf"`,
    'SetEnvIf Request_URI ^ PLEXER_AUTHD_SECRET=${PLEXER_AUTHD_SECRET}',
    // /private/ is answered through a sub-request (mod_dir), made after UnsetEnv has run.
    'DirectoryIndex page.txt',
    `<Directory "${dir}/www">`,
    '  Require all granted',
    '  Options +Includes',
    // Per-directory rewrite rules run in the fixups, after authentication and before the handler; the error
    // document's internal redirect carries the variable again as REDIRECT_*. (mod_env's UnsetEnv cannot
    // do this: it only removes what SetEnv/PassEnv added.)
    '  RewriteEngine On',
    '  RewriteRule ^ - [E=!PLEXER_AUTHD_SECRET,E=!REDIRECT_PLEXER_AUTHD_SECRET]',
    '  <FilesMatch "\\.shtml$">',
    '    SetOutputFilter INCLUDES',
    '  </FilesMatch>',
    '</Directory>',
    `AuthnzFcgiDefineProvider authn plexer fcgi://127.0.0.1:${authdPort}/`,
    `AuthnzFcgiDefineProvider authz plexer-roles fcgi://127.0.0.1:${authdPort}/`,
    '<Location /private>',
    '  AuthType Basic',
    '  AuthName "plexer"',
    '  AuthBasicProvider plexer',
    '  Require valid-user',
    // The error page is an internal redirect: the request's variables come back as REDIRECT_*.
    '  ErrorDocument 401 /errors/401.shtml',
    '</Location>',
    // A location that drops the secret before authentication (a per-directory SetEnvIf runs after the
    // server-level one): whatever a client sends there must not stand in for it.
    '<Location /forged>',
    '  SetEnvIf Request_URI ^ !PLEXER_AUTHD_SECRET',
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

function get(path: string, user?: string, password?: string, extraHeaders: Record<string, string> = {}): Promise<Answer> {
  return new Promise((resolve, reject) => {
    const start = performance.now();
    const headers: Record<string, string> = { ...extraHeaders };
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
  let seen = 0;
  await waitFor(
    async () => (seen = (await get(path, user, password)).status) === status,
    limitMs,
    () => `${path} to answer ${status} for ${user} (still ${seen})\n${authdLog}`,
    10,
  );
  return performance.now() - start;
}

const plexer = async (args: string[], input?: string) => {
  const result = await runPlexer(args, { configPath: store.configPath, ...(input !== undefined ? { input } : {}) });
  expect(result.code, `plexer ${args.join(' ')}: ${result.stderr}`).toBe(0);
  return result;
};

function startAuthd(port: number): Promise<void> {
  authd = spawn(
    process.execPath,
    [PLEXER_BIN, 'authd', '--listen', `127.0.0.1:${port}`, '--secret-file', secretFile, '--config', store.configPath],
    { env: {}, cwd: '/' },
  );
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
  store = await freshStore({ cache_ttl_ms: 300000, lockout_max_failures: 100 });
  await plexer(['group', 'add', 't1']);
  for (const [name, password] of [
    ['alice', 'pw-alice'],
    ['bob', 'pw-bob'],
    ['carol', 'pw-carol'],
    ['dora', 'pw-dora'],
    ['erin', 'pw-erin'],
  ]) {
    await plexer(['user', 'add', name!, '--group', 't1', '--password-stdin'], `${password}\n`);
  }
  await plexer(['user', 'disable', 'dora']);
  await plexer(['user', 'grant', 'alice', 'admins']);
  // Only ever asked about directly, never through Apache: its failures must stay at zero.
  await plexer(['user', 'add', 'frank', '--group', 't1', '--password-stdin'], 'pw-frank\n');

  dir = mkdtempSync(join(tmpdir(), 'plexer-authd-httpd-'));
  chmodSync(dir, 0o755);
  secretFile = join(dir, 'authd-secret.conf');
  const made = await runPlexer(['authd', '--new-secret', secretFile]);
  expect(made.code, made.stderr).toBe(0);
  secret = /^Define PLEXER_AUTHD_SECRET ([0-9a-f]{64})$/m.exec(readFileSync(secretFile, 'utf8'))![1]!;

  authdPort = await freePort();
  await startAuthd(authdPort);

  for (const sub of ['private', 'admin', 'norole', 'forged', 'errors']) {
    mkdirSync(join(dir, 'www', sub), { recursive: true });
    writeFileSync(join(dir, 'www', sub, 'page.txt'), `${sub} content\n`);
  }
  // Every variable the handler sees, for the checks that the secret does not reach it.
  writeFileSync(join(dir, 'www', 'private', 'env.shtml'), 'ENV-BEGIN\n<!--#printenv -->\nENV-END\n');
  writeFileSync(join(dir, 'www', 'errors', '401.shtml'), 'ERROR-401\n<!--#printenv -->\n');
  chmodSync(join(dir, 'www'), 0o755);
  for (const sub of ['private', 'admin', 'norole', 'forged', 'errors']) chmodSync(join(dir, 'www', sub), 0o755);
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
  if (dir) rmSync(dir, { recursive: true, force: true });
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

  it('accepts users imported from htpasswd ($apr1$, {SHA}) and replaces their hash with bcrypt after the first login', async () => {
    const line = (flag: string, user: string, password: string) =>
      execFileSync('htpasswd', [flag, user, password], { encoding: 'utf8' }).trim();
    const file = join(dir, 'legacy.htpasswd');
    writeFileSync(file, `${line('-nbm', 'mona', 'pw-mona')}\n${line('-nbs', 'saul', 'pw-saul')}\n`);
    await plexer(['user', 'import-htpasswd', file, '--group', 't1']);
    const hashOf = async (user: string) =>
      (await store.sql.query<{ password_hash: string }>('SELECT password_hash FROM users WHERE name = $1', [user])).rows[0]!.password_hash;
    for (const [user, password, legacy] of [
      ['mona', 'pw-mona', /^\$apr1\$/],
      ['saul', 'pw-saul', /^\{SHA\}/],
    ] as const) {
      expect(await hashOf(user)).toMatch(legacy);
      expect((await get('/private/page.txt', user, 'wrong')).status).toBe(401);
      expect(await hashOf(user)).toMatch(legacy);
      expect((await get('/private/page.txt', user, password)).status).toBe(200);
      // The rehash runs after the answer, in the background; authd logs it once the row is written.
      await waitFor(() => authdLog.includes(`password rehashed at the configured cost user=${user} `), 5_000, `${user}'s rehash`);
      expect(await hashOf(user)).toMatch(/^\$2[aby]\$/);
      expect((await get('/private/page.txt', user, password)).status).toBe(200);
      expect((await get('/private/page.txt', user, 'wrong')).status).toBe(401);
    }
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
    // Its log line travels through a pipe: it may arrive a moment after the answer.
    await waitFor(() => /role check refused: no PLEXER_ROLES/.test(authdLog), 5_000, "authd's refusal logged");
  });

  it('refuses a cached credential while the user is locked out', async () => {
    expect((await get('/private/page.txt', 'alice', 'pw-alice')).status).toBe(200);
    // Its own short-lived connection: the helper's pool would be left with an idle client that the database's
    // drop at the end terminates.
    const client = new pg.Client({ connectionString: store.db.url, options: '-c search_path=plexer' });
    await client.connect();
    // Her name from her own address (a lockout of the name alone would not hold where she has logged in).
    await client.query(`INSERT INTO login_failures (subject, failures, locked_until) VALUES ('pair:alice/127.0.0.1', 10, now() + interval '1 hour')
                        ON CONFLICT (subject) DO UPDATE SET locked_until = EXCLUDED.locked_until`);
    await client.end();
    // The warm check reads the lockout from memory, told by NOTIFY: within milliseconds.
    await waitForStatus('/private/page.txt', 'alice', 'pw-alice', 401);
    expect(authdLog).toMatch(/login refused reason=locked-out user=alice ip=127\.0\.0\.1 locked=pair:alice\/127\.0\.0\.1/);
    await plexer(['user', 'unlock', 'alice']);
    await waitForStatus('/private/page.txt', 'alice', 'pw-alice', 200);
  });

  it('answers warm checks from memory: a table lock on login_failures does not hold them', async () => {
    await plexer(['user', 'add', 'gina', '--group', 't1', '--password-stdin'], 'pw-gina\n');
    expect((await get('/private/page.txt', 'gina', 'pw-gina')).status).toBe(200);
    const holder = new pg.Client({ connectionString: store.db.url, options: '-c search_path=plexer' });
    await holder.connect();
    try {
      await holder.query('BEGIN');
      // Every read of the table (the cold path's, and the old warm path's) now waits until ROLLBACK.
      await holder.query('LOCK TABLE login_failures IN ACCESS EXCLUSIVE MODE');
      for (let i = 0; i < 20; i++) {
        const answer = await get('/private/page.txt', 'gina', 'pw-gina');
        expect(answer.status).toBe(200);
        expect(answer.ms).toBeLessThan(1_000);
      }
    } finally {
      await holder.query('ROLLBACK');
      await holder.end();
    }
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
    console.log(
      `Apache + authd, bcrypt_cost=4: refused (bcrypt each time) p50 ${p(cold, 0.5).toFixed(2)} ms; ` +
        `cached success p50 ${p(warm, 0.5).toFixed(2)} ms p99 ${p(warm, 0.99).toFixed(2)} ms`,
    );
    expect(p(warm, 0.5)).toBeLessThan(50);
  });

  it('keeps the secret away from handlers: pages, sub-requests and error documents (REDIRECT_*) do not see it', async () => {
    const page = await get('/private/env.shtml', 'alice', 'pw-alice');
    expect(page.status).toBe(200);
    expect(page.body).toContain('ENV-BEGIN');
    expect(page.body).toContain('REMOTE_USER=alice');
    expect(page.body).not.toContain(secret);
    expect(page.body).not.toContain('PLEXER_AUTHD_SECRET');
    // /private/ is served through mod_dir's sub-request, made after UnsetEnv: the same auth configuration is
    // not asked again, so the missing secret does not matter there.
    const index = await get('/private/', 'alice', 'pw-alice');
    expect(index.status).toBe(200);
    expect(index.body).toBe('private content\n');
    // A refused login is answered by the 401 error document, an internal redirect that copies the request's
    // variables as REDIRECT_*: without "E=!REDIRECT_PLEXER_AUTHD_SECRET" the page would print it.
    const refused = await get('/private/page.txt', 'alice', 'wrong');
    expect(refused.status).toBe(401);
    expect(refused.body).toContain('ERROR-401');
    expect(refused.body).toContain('REDIRECT_STATUS=401');
    expect(refused.body).not.toContain(secret);
    expect(refused.body).not.toContain('PLEXER_AUTHD_SECRET');
  });

  it('does not let a client header stand in for the secret', async () => {
    const before = authdLog.length;
    for (const name of ['PLEXER_AUTHD_SECRET', 'Plexer-Authd-Secret', 'X-Plexer-Authd-Secret']) {
      // Apache drops header names with "_" and turns the others into HTTP_*: none can become the variable.
      expect((await get('/forged/page.txt', 'alice', 'pw-alice', { [name]: secret })).status, name).toBe(500);
    }
    expect(authdLog.slice(before)).toMatch(/caller refused: not Apache reason=no-secret peer=127\.0\.0\.1:\d+/);
    // The same request where Apache sets the secret is accepted.
    expect((await get('/private/page.txt', 'alice', 'pw-alice', { 'Plexer-Authd-Secret': 'x' })).status).toBe(200);
  });

  const ask = (params: Record<string, string>) => authorizerRequest({ host: '127.0.0.1', port: authdPort }, params);
  const login = (user: string, password: string, extra: Record<string, string> = {}) => ({
    FCGI_ROLE: 'AUTHORIZER',
    FCGI_APACHE_ROLE: 'AUTHENTICATOR',
    REMOTE_USER: user,
    REMOTE_PASSWD: password,
    REMOTE_ADDR: '10.9.9.9',
    ...extra,
  });
  const failureRows = async () =>
    (await store.sql.query<{ n: string }>(`SELECT count(*) AS n FROM login_failures WHERE subject IN ('user:frank', 'ip:10.9.9.9')`))
      .rows[0]!.n;

  it('answers a direct caller without the secret the same 500 whatever it asks, and records nothing', async () => {
    // Root passes the socket-owner check: only the secret is missing (or wrong).
    const answers: AuthorizerAnswer[] = [];
    for (const extra of [{}, { PLEXER_AUTHD_SECRET: 'not-the-secret' }, { PLEXER_AUTHD_SECRET: secret.slice(0, -1) }] as Array<
      Record<string, string>
    >) {
      answers.push(await ask(login('frank', 'pw-frank', extra)));
      answers.push(await ask(login('frank', 'wrong', extra)));
      answers.push(await ask(login('nosuchuser', 'x', extra)));
      answers.push(
        await ask({ FCGI_ROLE: 'AUTHORIZER', FCGI_APACHE_ROLE: 'AUTHORIZER', REMOTE_USER: 'alice', PLEXER_ROLES: 'admins', ...extra }),
      );
    }
    for (const answer of answers) expect(answer).toEqual(answers[0]);
    expect(answers[0]!.status).toBe(500);
    expect(await failureRows()).toBe('0');
    expect(authdLog).toMatch(/caller refused: not Apache reason=wrong-secret peer=127\.0\.0\.1:\d+/);
    // The control: the same direct request with the secret, from root, is answered.
    expect((await ask(login('frank', 'pw-frank', { PLEXER_AUTHD_SECRET: secret }))).status).toBe(200);
    expect((await ask(login('frank', 'wrong', { PLEXER_AUTHD_SECRET: secret }))).status).toBe(401);
    await store.sql.query(`DELETE FROM login_failures WHERE subject IN ('user:frank', 'ip:10.9.9.9')`);
  });

  it('refuses another local user even with the secret: closed unanswered at connect, no failures recorded, no lockout', async () => {
    // A tenant's process that learnt the secret (a WSGI daemon forked from Apache holds it in memory): it
    // runs as its own user, here nobody (65534). 120 wrong passwords is past lockout_max_failures (100).
    const script = join(dir, 'tenant-probe.mjs');
    const client = new URL('../../dist/fastcgi/client.js', import.meta.url).href;
    writeFileSync(
      script,
      [
        `import { authorizerRequest } from ${JSON.stringify(client)};`,
        'const [port, secret] = process.argv.slice(2);',
        // What the caller gets: an answer, or none (closed or reset before END_REQUEST).
        'const outcome = (p) => p.then((a) => ({ status: a.status, headers: [...a.headers], appStatus: a.appStatus, protocolStatus: a.protocolStatus }), () => ({ answered: false }));',
        'const ask = (user, password) => outcome(authorizerRequest({ host: "127.0.0.1", port: Number(port) },',
        '  { FCGI_ROLE: "AUTHORIZER", FCGI_APACHE_ROLE: "AUTHENTICATOR", REMOTE_USER: user, REMOTE_PASSWD: password, REMOTE_ADDR: "10.9.9.9", PLEXER_AUTHD_SECRET: secret }));',
        'const out = { right: await ask("frank", "pw-frank"), wrong: await ask("frank", "wrong"), unknown: await ask("nosuchuser", "x"),',
        '  roles: await outcome(authorizerRequest({ host: "127.0.0.1", port: Number(port) }, { FCGI_APACHE_ROLE: "AUTHORIZER", REMOTE_USER: "alice", PLEXER_ROLES: "admins", PLEXER_AUTHD_SECRET: secret })) };',
        'const many = [];',
        'for (let i = 0; i < 120; i++) many.push(JSON.stringify(await ask("frank", `guess-${i}`)));',
        'out.many = [...new Set(many)].map((a) => JSON.parse(a));',
        'console.log(JSON.stringify(out));',
      ].join('\n'),
    );
    chmodSync(script, 0o644);
    const child = spawn(process.execPath, [script, String(authdPort), secret], { uid: 65534, gid: 65534, env: {}, cwd: '/' });
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (d) => (stdout += d));
    child.stderr.on('data', (d) => (stderr += d));
    const code = await new Promise<number | null>((r) => child.on('exit', r));
    expect(code, stderr).toBe(0);
    const result = JSON.parse(stdout) as Record<string, unknown> & { right: { answered?: boolean }; many: unknown[] };
    // The owner of its socket is looked up at connect, before anything it sent is read: no answer at all.
    expect(result.right).toEqual({ answered: false });
    expect(result.wrong).toEqual(result.right);
    expect(result.unknown).toEqual(result.right);
    expect(result.roles).toEqual(result.right);
    expect(result.many).toEqual([result.right]);
    expect(await failureRows()).toBe('0');
    expect(authdLog).toMatch(/caller refused: not Apache reason=peer-uid peer=127\.0\.0\.1:\d+ uid=65534/);
    // Not locked out: through Apache frank still logs in.
    expect((await get('/private/page.txt', 'frank', 'pw-frank')).status).toBe(200);
    // 124 refused connections in well under the 10 s window: at most 10 lines, the rest counted.
    const lines = authdLog.split('\n').filter((l) => l.includes('reason=peer-uid'));
    expect(lines.length).toBeLessThanOrEqual(10);
  });

  it("another local user's flood of unfinished requests holds nothing: every connection closed at connect, logins go on", async () => {
    // Before: 1,030 connections that sent BEGIN_REQUEST and never ended PARAMS filled the 1,024 connections and
    // every login through Apache got 500. Now the owner of each is looked up before anything it sends is read.
    const script = join(dir, 'tenant-flood.mjs');
    const protocol = new URL('../../dist/fastcgi/protocol.js', import.meta.url).href;
    writeFileSync(
      script,
      [
        'import net from "node:net";',
        `import { encodeBeginRequest, encodeRecord, encodeNameValuePairs, RecordType, Role } from ${JSON.stringify(protocol)};`,
        'const port = Number(process.argv[2]);',
        'const start = Buffer.concat([encodeBeginRequest(1, Role.Authorizer, 0), encodeRecord(RecordType.Params, 1, encodeNameValuePairs([["HTTP_X", "x".repeat(60000)]]))]);',
        'let open = 0, closed = 0;',
        'for (let i = 0; i < 1100; i++) {',
        '  const s = net.connect({ host: "127.0.0.1", port }, () => { open++; s.write(start); });',
        '  s.on("error", () => {}); s.on("close", () => closed++);',
        '}',
        'const until = Date.now() + 8000;',
        'while (closed < 1100 && Date.now() < until) await new Promise((r) => setTimeout(r, 50));',
        'console.log(JSON.stringify({ open, closed }));',
        'process.exit(0);',
      ].join('\n'),
    );
    chmodSync(script, 0o644);
    const child = spawn(process.execPath, [script, String(authdPort)], { uid: 65534, gid: 65534, env: {}, cwd: '/' });
    let stdout = '';
    child.stdout.on('data', (d) => (stdout += d));
    // Logins through Apache while the flood runs.
    const during = [];
    for (let i = 0; i < 10; i++) during.push((await get('/private/page.txt', 'frank', 'pw-frank')).status);
    await new Promise<number | null>((r) => child.on('exit', r));
    const result = JSON.parse(stdout) as { open: number; closed: number };
    console.log(`flood from uid 65534: ${JSON.stringify(result)}; logins meanwhile: ${during.join(' ')}`);
    expect(during.every((status) => status === 200)).toBe(true);
    expect(result.closed).toBe(1100);
    expect(await failureRows()).toBe('0');
  }, 60_000);

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
