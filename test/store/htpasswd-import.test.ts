// Migrating from an htpasswd file: htpasswd's own MD5 ($apr1$) and SHA-1 ({SHA}) lines are imported as they are
// and become bcrypt at the user's first successful login (through rehash_password, as the helpers' role);
// existing users, refused lines, batches and progress. Real PostgreSQL, real `htpasswd`, real `plexer authn`.
import { execFileSync } from 'node:child_process';
import { mkdtempSync, writeFileSync } from 'node:fs';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startProgress } from '../../src/cli/progress.js';
import { freshStore, runPlexer, type TestStore } from '../helpers/plexer.js';

let store: TestStore;
const authEnv = { PATH: '/usr/bin:/bin', AUTHTYPE: 'PASS', IP: '127.0.0.9', URI: '/app/' };
const authn = (user: string, password: string) =>
  runPlexer(['authn'], { configPath: store.configPath, input: `${user}\n${password}\n`, env: authEnv });
const admin = (...args: string[]) => runPlexer(args, { configPath: store.configPath });
const htpasswdLine = (flag: string, user: string, password: string) =>
  execFileSync('htpasswd', [flag, user, password], { encoding: 'utf8' }).trim();
const hashOf = async (user: string): Promise<string | undefined> =>
  (await store.sql.query<{ password_hash: string }>('SELECT password_hash FROM users WHERE name = $1', [user])).rows[0]?.password_hash;

function file(lines: string[]): string {
  const path = `${mkdtempSync('/tmp/plexer-import-')}/users.htpasswd`;
  writeFileSync(path, lines.join('\n') + '\n');
  return path;
}

beforeAll(async () => {
  store = await freshStore();
  expect((await admin('group', 'add', 'tenant1')).code).toBe(0);
  expect((await admin('group', 'add', 'tenant2')).code).toBe(0);
});

afterAll(() => store.close());

describe('user import-htpasswd', () => {
  it('imports bcrypt, $apr1$ and {SHA} lines, refuses the rest with line numbers, and a first login rehashes to bcrypt', async () => {
    const added = await runPlexer(['user', 'add', 'olga', '--group', 'tenant1', '--password-stdin'], {
      configPath: store.configPath,
      input: 'olga-pw\n',
    });
    expect(added.code).toBe(0);
    const path = file([
      '# from /etc/apache2/.htpasswd',
      htpasswdLine('-nbB', 'bea', 'pw-bea'),
      htpasswdLine('-nbm', 'max', 'pw-max'),
      htpasswdLine('-nbs', 'sue', 'pw-sue'),
      'des:abJnggxhB/yWI',
      `olga:${htpasswdLine('-nbm', 'x', 'other').split(':')[1]}`,
      'plain:secret',
    ]);
    const imported = await admin('user', 'import-htpasswd', path, '--group', 'tenant1');
    expect(imported.code).toBe(1);
    expect(imported.stdout).toContain('imported 3 user(s); refused 3 line(s)');
    expect(imported.stderr.trim().split('\n')).toEqual([
      `${path}:5: des: DES crypt() hash: not imported (weak); set a new password with plexer user passwd`,
      `${path}:6: olga: user already exists (--skip-existing leaves it, --update replaces its hash and group)`,
      `${path}:7: plain: plain text or unknown hash format: not imported`,
    ]);
    expect(await hashOf('max')).toMatch(/^\$apr1\$/);
    expect(await hashOf('sue')).toMatch(/^\{SHA\}/);
    // olga kept her own password.
    expect((await authn('olga', 'olga-pw')).code).toBe(0);

    for (const [user, password] of [
      ['max', 'pw-max'],
      ['sue', 'pw-sue'],
    ] as const) {
      const legacy = await hashOf(user);
      expect((await authn(user, 'wrong')).code).toBe(12);
      expect(await hashOf(user)).toBe(legacy);
      const ok = await authn(user, password);
      expect(ok.code).toBe(0);
      expect(ok.stderr).toMatch(/password rehashed at the configured cost/);
      expect(await hashOf(user)).toMatch(/^\$2[aby]\$04\$/);
      expect((await authn(user, password)).code).toBe(0);
      expect((await authn(user, 'wrong')).code).toBe(12);
    }
    expect((await authn('bea', 'pw-bea')).code).toBe(0);
  });

  it('rehash_password replaces a legacy hash only with bcrypt, and a bcrypt one only with a higher cost', async () => {
    const md5 = htpasswdLine('-nbm', 'x', 'pw').split(':')[1]!;
    await store.sql.query("INSERT INTO users (name, password_hash) VALUES ('rh', $1)", [md5]);
    const rehash = (oldHash: string, newHash: string) =>
      store.sql.query<{ ok: boolean }>("SELECT rehash_password('rh', $1, $2) AS ok", [oldHash, newHash]);
    const sha = htpasswdLine('-nbs', 'x', 'pw').split(':')[1]!;
    await expect(rehash(md5, sha)).rejects.toThrow(/not a bcrypt hash/);
    await expect(rehash('plain', htpasswdLine('-nbB', 'x', 'pw').split(':')[1]!)).rejects.toThrow(/neither bcrypt/);
    const bcrypt5 = execFileSync('htpasswd', ['-nbBC', '5', 'x', 'pw'], { encoding: 'utf8' }).trim().split(':')[1]!;
    expect((await rehash(md5, bcrypt5)).rows[0]!.ok).toBe(true);
    const bcrypt4 = execFileSync('htpasswd', ['-nbBC', '4', 'x', 'pw'], { encoding: 'utf8' }).trim().split(':')[1]!;
    await expect(rehash(bcrypt5, bcrypt4)).rejects.toThrow(/higher bcrypt cost/);
    // Someone changed it meanwhile: nothing replaced.
    expect((await rehash(md5, bcrypt5)).rows[0]!.ok).toBe(false);
  });

  it('--skip-existing leaves existing users; --update replaces their hash and group', async () => {
    const path = file([htpasswdLine('-nbm', 'olga', 'new-olga'), htpasswdLine('-nbm', 'nina', 'pw-nina')]);
    const skipped = await admin('user', 'import-htpasswd', path, '--group', 'tenant2', '--skip-existing');
    expect(skipped.code).toBe(0);
    expect(skipped.stdout).toContain('imported 1 user(s); left 1 existing user(s) as they were; refused 0 line(s)');
    expect((await authn('olga', 'olga-pw')).code).toBe(0);
    const updated = await admin('user', 'import-htpasswd', path, '--group', 'tenant2', '--update');
    expect(updated.code).toBe(0);
    expect(updated.stdout).toContain('imported 2 user(s); refused 0 line(s)');
    expect((await authn('olga', 'new-olga')).code).toBe(0);
    const { rows } = await store.sql.query("SELECT name, daemon_group FROM users WHERE name IN ('olga', 'nina') ORDER BY name");
    expect(rows).toEqual([
      { name: 'nina', daemon_group: 'tenant2' },
      { name: 'olga', daemon_group: 'tenant2' },
    ]);
    expect((await admin('user', 'import-htpasswd', path, '--group', 'tenant2', '--update', '--skip-existing')).code).toBe(2);
  });

  it('an unknown group imports nothing and says how to create it', async () => {
    const path = file([htpasswdLine('-nbm', 'zed', 'pw')]);
    const result = await admin('user', 'import-htpasswd', path, '--group', 'nosuch');
    expect(result.code).toBe(1);
    expect(result.stderr).toContain('no daemon group "nosuch"; create it with `plexer group add nosuch`');
    expect(await hashOf('zed')).toBeUndefined();
  });

  it('imports 20,000 lines (in batches of 1,000 rows per INSERT)', async () => {
    const md5 = htpasswdLine('-nbm', 'x', 'bulk-pw').split(':')[1]!;
    const path = file(Array.from({ length: 20_000 }, (_, i) => `bulk${i}:${md5}`));
    const started = Date.now();
    const result = await admin('user', 'import-htpasswd', path, '--group', 'tenant2');
    const elapsed = Date.now() - started;
    expect(result.code).toBe(0);
    expect(result.stdout).toContain('imported 20000 user(s); refused 0 line(s)');
    expect((await store.sql.query("SELECT count(*)::int AS n FROM users WHERE name LIKE 'bulk%'")).rows[0].n).toBe(20_000);
    expect((await authn('bulk19999', 'bulk-pw')).code).toBe(0);
    process.stderr.write(`import of 20000 lines: ${elapsed} ms\n`);
  });

  it('progress: a bar on a terminal, a line every interval otherwise (fake clock)', () => {
    let clock = 0;
    const written: string[] = [];
    const stream = (isTTY: boolean) => ({ isTTY, write: (s: string) => written.push(s) }) as unknown as NodeJS.WriteStream;
    const plain = startProgress('importing f', 3000, { stream: stream(false), intervalMs: 5000, now: () => clock });
    plain.advance(1000);
    clock = 4999;
    plain.advance(1000);
    clock = 5000;
    plain.advance(1000);
    plain.done();
    expect(written).toEqual(['importing f: 3000/3000 (100%)\n']);
    written.length = 0;
    const bar = startProgress('importing f', 4, { stream: stream(true), intervalMs: 0, now: () => clock });
    bar.advance(2);
    bar.done();
    expect(written).toEqual([
      `\rimporting f [${'#'.repeat(15)}${' '.repeat(15)}] 2/4`,
      `\rimporting f [${'#'.repeat(15)}${' '.repeat(15)}] 2/4\n`,
    ]);
  });
});

describe('hashes made by PostgreSQL', () => {
  it("pgcrypto's crypt(…, gen_salt('bf')) hashes are accepted by authn", async () => {
    const available = await store.sql.query("SELECT 1 FROM pg_available_extensions WHERE name = 'pgcrypto'");
    expect(available.rowCount).toBe(1);
    await store.sql.query('CREATE EXTENSION IF NOT EXISTS pgcrypto SCHEMA public');
    await store.sql.query(
      "INSERT INTO users (name, password_hash, daemon_group) VALUES ('pat', public.crypt('pw-pat', public.gen_salt('bf')), 'tenant1')",
    );
    expect(await hashOf('pat')).toMatch(/^\$2a\$06\$/);
    expect((await authn('pat', 'pw-pat')).code).toBe(0);
    expect((await authn('pat', 'pw-pa')).code).toBe(12);
  });
});
