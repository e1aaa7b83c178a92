import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { freshStore, runPlexer, writeConfig, type TestStore } from './helpers/plexer.js';

let store: TestStore;
let strict: string;
const authn = (user: string, password: string, ip: string) =>
  runPlexer(['authn'], { configPath: strict, input: `${user}\n${password}\n`, env: { PATH: '/usr/bin:/bin', IP: ip } });
const cli = (...args: string[]) => runPlexer(args, { configPath: store.configPath, input: 'right\n' });

beforeAll(async () => {
  store = await freshStore();
  strict = writeConfig(store.db.url, 'lockout_max_failures = 3\nlockout_window_seconds = 600\nlockout_seconds = 600');
  await cli('group', 'add', 'tenant1');
  for (const user of ['alice', 'carol']) await cli('user', 'add', user, '--group', 'tenant1', '--password-stdin');
});

afterAll(() => store.close());

describe('brute-force protection', () => {
  it('locks a user name after too many failures, from any address, until unlocked', async () => {
    expect((await authn('alice', 'bad1', '10.0.0.1')).code).toBe(12);
    expect((await authn('alice', 'bad2', '10.0.0.2')).code).toBe(12);
    const third = await authn('alice', 'bad3', '10.0.0.3');
    expect(third.code).toBe(12);
    expect(third.stderr).toMatch(/lockout started subject=user:alice failures=3 seconds=600/);
    const locked = await authn('alice', 'right', '10.0.0.4');
    expect(locked.code).toBe(14);
    expect(locked.stderr).toMatch(/login refused reason=locked-out user=alice ip=10\.0\.0\.4 locked=user:alice/);
    const rows = await store.sql.query(`SELECT subject, failures FROM login_failures ORDER BY subject`);
    expect(rows.rows).toContainEqual({ subject: 'user:alice', failures: 3 });
    expect((await cli('user', 'unlock', 'alice')).stdout).toMatch(/user:alice unlocked/);
    expect((await authn('alice', 'right', '10.0.0.4')).code).toBe(0);
  });

  it('locks a client address that tries many names, and leaves other addresses alone', async () => {
    for (const name of ['ghost1', 'ghost2', 'ghost3']) expect((await authn(name, 'x', '10.9.9.9')).code).toBe(11);
    expect((await authn('carol', 'right', '10.9.9.9')).code).toBe(14);
    expect((await authn('carol', 'right', '10.9.9.8')).code).toBe(0);
    expect((await cli('user', 'unlock', '--ip', '10.9.9.9')).code).toBe(0);
    expect((await authn('carol', 'right', '10.9.9.9')).code).toBe(0);
  });

  it('locks for the configured cooling period and lifts the lockout by itself when it ends', async () => {
    for (const pw of ['a', 'b', 'c']) await authn('carol', pw, '10.1.1.1');
    expect((await authn('carol', 'right', '10.1.1.2')).code).toBe(14);
    const { rows } = await store.sql.query(
      `SELECT extract(epoch FROM locked_until - now())::int AS seconds FROM login_failures WHERE subject = 'user:carol'`);
    expect(rows[0].seconds).toBeGreaterThan(540);
    expect(rows[0].seconds).toBeLessThanOrEqual(600);
    // Let the cooling period end (rather than wait ten minutes): the next attempt is checked normally.
    await store.sql.query(`UPDATE login_failures SET locked_until = now() - interval '1 second' WHERE subject = 'user:carol'`);
    expect((await authn('carol', 'right', '10.1.1.2')).code).toBe(0);
  });

  it('resets a user\'s count on a successful login', async () => {
    await authn('alice', 'bad', '10.2.2.2');
    await authn('alice', 'bad', '10.2.2.2');
    expect((await authn('alice', 'right', '10.2.2.3')).code).toBe(0);
    await authn('alice', 'bad', '10.2.2.4');
    expect((await authn('alice', 'right', '10.2.2.5')).code).toBe(0);
  });
});
