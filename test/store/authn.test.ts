import { mkdtempSync, writeFileSync } from 'node:fs';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import bcrypt from 'bcryptjs';
import { formatConfig } from '../../src/config.js';
import { freshStore, runPlexer, writeConfig, type TestStore } from '../helpers/plexer.js';

let store: TestStore;
const authEnv = { PATH: '/usr/bin:/bin', AUTHTYPE: 'PASS', IP: '127.0.0.9', URI: '/app/' };

const authn = (input: string | Buffer, configPath = store.configPath) => runPlexer(['authn'], { configPath, input, env: authEnv });

beforeAll(async () => {
  store = await freshStore();
  await runPlexer(['group', 'add', 'tenant1'], { configPath: store.configPath });
  for (const [name, password] of [
    ['alice', 'correct horse'],
    ['dora', 'pw-dora'],
  ] as const) {
    const added = await runPlexer(['user', 'add', name, '--group', 'tenant1', '--password-stdin'], {
      configPath: store.configPath,
      input: `${password}\n`,
    });
    expect(added.code).toBe(0);
  }
  await runPlexer(['user', 'disable', 'dora'], { configPath: store.configPath });
});

afterAll(() => store.close());

describe('plexer authn', () => {
  it('accepts the right password and refuses everything else with distinct codes', async () => {
    expect((await authn('alice\ncorrect horse\n')).code).toBe(0);
    const wrong = await authn('alice\nwrong\n');
    expect(wrong.code).toBe(12);
    expect(wrong.stderr).toMatch(/login refused reason=wrong-password user=alice ip=127\.0\.0\.9/);
    expect(wrong.stderr).not.toContain('wrong\n'.trim() + ' ');
    expect((await authn('nobody\ncorrect horse\n')).code).toBe(11);
    expect((await authn('dora\npw-dora\n')).code).toBe(13);
    expect((await authn('dora\nnot-dora\n')).code).toBe(12);
  });

  it('never writes the password to its log', async () => {
    const result = await authn('alice\nS3cret-Never-Logged\n');
    expect(result.stderr).not.toContain('S3cret-Never-Logged');
  });

  it('refuses malformed input without hanging', async () => {
    expect((await authn('')).code).toBe(10);
    expect((await authn('alice')).code).toBe(10);
    expect((await authn('ali ce\npw\n')).code).toBe(10);
    expect((await authn(`alice\n${'p'.repeat(100_000)}\n`)).code).toBe(10);
    expect((await authn(`alice\n${'p'.repeat(100)}\n`)).code).toBe(12);
  });

  it('accepts a password line without its final newline', async () => {
    expect((await authn('alice\ncorrect horse')).code).toBe(0);
  });

  it('verifies hashes imported from an htpasswd file, and refuses malformed lines with their numbers', async () => {
    const dir = mkdtempSync('/tmp/plexer-htpasswd-');
    const file = `${dir}/users.htpasswd`;
    const y = bcrypt.hashSync('pw-erin', 5).replace(/^\$2b\$/, '$2y$');
    const a = bcrypt.hashSync('pw-fred', 5).replace(/^\$2b\$/, '$2a$');
    writeFileSync(
      file,
      [`erin:${y}`, `fred:${a}`, 'gina:$apr1$abc$def', 'hank:{SHA}W6ph5Mm5Pz8GgiULbPgzG37mj9g=', 'broken line', ''].join('\n'),
    );
    const imported = await runPlexer(['user', 'import-htpasswd', file, '--group', 'tenant1'], { configPath: store.configPath });
    expect(imported.code).toBe(1);
    expect(imported.stdout).toMatch(/imported 3 user\(s\); refused 2 line\(s\)/);
    expect(imported.stderr).toMatch(/:3: gina: malformed MD5 \(\$apr1\$\) hash/);
    expect(imported.stderr).not.toMatch(/hank/);
    expect(imported.stderr).toMatch(/:5: \(no user\): not a "user:hash" line/);
    expect((await authn('erin\npw-erin\n')).code).toBe(0);
    expect((await authn('fred\npw-fred\n')).code).toBe(0);
    expect((await authn('fred\npw-erin\n')).code).toBe(12);
    expect((await authn('gina\nanything\n')).code).toBe(11);
    expect((await authn('hank\nanything\n')).code).toBe(12);
  });

  it('rehashes a password whose bcrypt cost is below the configured one on successful login', async () => {
    const { rows: before } = await store.sql.query(`SELECT password_hash FROM users WHERE name = 'erin'`);
    expect(before[0].password_hash).toMatch(/^\$2y\$05\$/);
    const strict = writeConfig(store.db.url, { bcrypt_cost: 6 });
    expect((await authn('erin\npw-erin\n', strict)).code).toBe(0);
    const { rows: after } = await store.sql.query(`SELECT password_hash FROM users WHERE name = 'erin'`);
    expect(after[0].password_hash).toMatch(/^\$2[ab]\$06\$/);
    expect((await authn('erin\npw-erin\n')).code).toBe(0);
  });

  it('fails closed, within its time limit, when the store is unreachable', async () => {
    const dir = mkdtempSync('/tmp/plexer-nostore-');
    writeFileSync(`${dir}/plexer.conf`, formatConfig({ pg_host: dir, pg_port: 1, authn_timeout_ms: 1500 }));
    const started = Date.now();
    const result = await authn('alice\ncorrect horse\n', `${dir}/plexer.conf`);
    expect(result.code).toBe(20);
    // The hard limit is authn_timeout_ms (1.5 s here); the rest is Node starting on a possibly busy machine.
    expect(Date.now() - started).toBeLessThan(6_000);
    expect(result.stderr).toMatch(/cannot check password; refusing/);
  });

  it('stops at its own time limit when stdin is never closed', async () => {
    const { spawn } = await import('node:child_process');
    const { PLEXER_BIN } = await import('../helpers/plexer.js');
    const dir = mkdtempSync('/tmp/plexer-slow-');
    writeFileSync(`${dir}/plexer.conf`, formatConfig({ authn_timeout_ms: 400 }));
    const child = spawn(process.execPath, [PLEXER_BIN, 'authn', '--config', `${dir}/plexer.conf`], { env: {} });
    child.stdin.write('alice\n');
    const code = await new Promise((resolve) => child.on('exit', resolve));
    expect([10, 21]).toContain(code);
  });
});

describe('plexer authn against line injection', () => {
  it('refuses a user name that carries a newline (Basic auth lets one through) instead of shifting the lines', async () => {
    const result = await authn('alice\ncorrect horse\nanything\n');
    expect(result.code).toBe(10);
    expect(result.stderr).not.toContain('correct horse');
  });
});
