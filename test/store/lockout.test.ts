import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import bcrypt from 'bcryptjs';
import { freshStore, runPlexer, writeConfig, type TestStore } from '../helpers/plexer.js';

const bcryptHash = (password: string, cost: number) => bcrypt.hash(password, cost);

let store: TestStore;
let strict: string;
const authn = (user: string, password: string, ip: string) =>
  runPlexer(['authn'], { configPath: strict, input: `${user}\n${password}\n`, env: { PATH: '/usr/bin:/bin', IP: ip } });
const cli = (...args: string[]) => runPlexer(args, { configPath: store.configPath, input: 'right\n' });

beforeAll(async () => {
  store = await freshStore();
  strict = writeConfig(store.db.url, { lockout_max_failures: 3, lockout_window_seconds: 600, lockout_seconds: 600 });
  await cli('group', 'add', 'tenant1');
  for (const user of ['alice', 'carol']) await cli('user', 'add', user, '--group', 'tenant1', '--password-stdin');
});

afterAll(() => store.close());

describe('brute-force protection', () => {
  it('throttles a user name from one address only: the guesser is locked, the user elsewhere is not', async () => {
    expect((await authn('alice', 'bad1', '10.0.0.1')).code).toBe(12);
    expect((await authn('alice', 'bad2', '10.0.0.1')).code).toBe(12);
    const third = await authn('alice', 'bad3', '10.0.0.1');
    expect(third.code).toBe(12);
    expect(third.stderr).toMatch(/lockout started subject=pair:alice\/10\.0\.0\.1 failures=3 seconds=600/);
    const locked = await authn('alice', 'right', '10.0.0.1');
    expect(locked.code).toBe(14);
    expect(locked.stderr).toMatch(/login refused reason=locked-out user=alice ip=10\.0\.0\.1 locked=pair:alice\/10\.0\.0\.1/);
    expect((await authn('alice', 'right', '10.0.0.4')).code).toBe(0);
    const rows = await store.sql.query(`SELECT subject, failures FROM login_failures WHERE subject LIKE 'pair:%' ORDER BY subject`);
    expect(rows.rows).toContainEqual({ subject: 'pair:alice/10.0.0.1', failures: 3 });
    const listed = (await cli('user', 'list')).stdout;
    expect(listed).toMatch(/LOCKED OUT/);
    expect(listed).toMatch(/^alice .* from 10\.0\.0\.1 until 20\d\d-\d\d-\d\dT/m);
    expect(listed).toMatch(/^carol .* -$/m);
    const json = JSON.parse((await cli('user', 'list', '--json')).stdout) as Array<{ name: string; lockouts: Array<{ address: string }> }>;
    expect(json.find((u) => u.name === 'alice')?.lockouts).toEqual([expect.objectContaining({ address: '10.0.0.1' })]);
    expect((await cli('user', 'unlock', 'alice')).stdout).toMatch(/pair:alice\/10\.0\.0\.1 unlocked/);
    expect((await authn('alice', 'right', '10.0.0.1')).code).toBe(0);
  });

  it('does not let failures from other addresses stop a user; locks the name only at 10x, with an error line, not where she logs in', async () => {
    for (let i = 1; i <= 10; i++) expect((await authn('carol', `bad${i}`, `10.3.0.${i}`)).code).toBe(12);
    expect((await authn('carol', 'right', '10.3.1.1')).code).toBe(0);
    // Her success reset the name's count: 30 more failures, each from its own address, lock the name.
    const attempts = Array.from({ length: 30 }, (_, i) => authn('carol', 'bad', `10.4.0.${i + 1}`));
    const results = await Promise.all(attempts);
    expect(results.every((r) => r.code === 12)).toBe(true);
    expect(results.some((r) => /account locked: failed logins from many addresses subject=user:carol failures=30/.test(r.stderr))).toBe(
      true,
    );
    // Locked from everywhere she has not logged in from; where she has (10.3.1.1), she keeps access.
    expect((await authn('carol', 'right', '10.3.1.2')).code).toBe(14);
    expect((await authn('carol', 'right', '10.3.1.1')).code).toBe(0);
    expect((await cli('user', 'unlock', 'carol')).stdout).toMatch(/user:carol unlocked/);
    expect((await authn('carol', 'right', '10.3.1.2')).code).toBe(0);
  });

  it('keeps at most the 20 addresses a user last logged in from as known', async () => {
    for (let i = 1; i <= 25; i++) {
      await store.sql.query('SELECT * FROM clear_login_failures($1::text[])', [[`pair:zoe/10.7.0.${i}`, 'user:zoe']]);
    }
    const { rows } = await store.sql.query(`SELECT subject FROM login_failures WHERE starts_with(subject, 'known:zoe/') ORDER BY subject`);
    expect(rows).toHaveLength(20);
    expect(rows.map((r) => r.subject)).toContain('known:zoe/10.7.0.25');
    expect(rows.map((r) => r.subject)).not.toContain('known:zoe/10.7.0.1');
  });

  it('locks a client address that tries many names (3x the limit), and leaves other addresses alone', async () => {
    for (let i = 1; i <= 9; i++) expect((await authn(`ghost${i}`, 'x', '10.9.9.9')).code).toBe(11);
    expect((await authn('carol', 'right', '10.9.9.9')).code).toBe(14);
    expect((await authn('carol', 'right', '10.9.9.8')).code).toBe(0);
    expect((await cli('user', 'unlock', '--ip', '10.9.9.9')).stdout).toMatch(/ip:10\.9\.9\.9 unlocked/);
    expect((await authn('carol', 'right', '10.9.9.9')).code).toBe(0);
  });

  it('locks for the configured cooling period and lifts the lockout by itself when it ends', async () => {
    for (const pw of ['a', 'b', 'c']) await authn('carol', pw, '10.1.1.1');
    expect((await authn('carol', 'right', '10.1.1.1')).code).toBe(14);
    const { rows } = await store.sql.query(
      `SELECT extract(epoch FROM locked_until - now())::int AS seconds FROM login_failures WHERE subject = 'pair:carol/10.1.1.1'`,
    );
    expect(rows[0].seconds).toBeGreaterThan(540);
    expect(rows[0].seconds).toBeLessThanOrEqual(600);
    // Let the cooling period end (rather than wait ten minutes): the next attempt is checked normally.
    await store.sql.query(`UPDATE login_failures SET locked_until = now() - interval '1 second' WHERE subject = 'pair:carol/10.1.1.1'`);
    expect((await authn('carol', 'right', '10.1.1.1')).code).toBe(0);
  });

  it('resets the count of that user from that address on a successful login', async () => {
    await authn('alice', 'bad', '10.2.2.2');
    await authn('alice', 'bad', '10.2.2.2');
    expect((await authn('alice', 'right', '10.2.2.2')).code).toBe(0);
    await authn('alice', 'bad', '10.2.2.2');
    expect((await authn('alice', 'right', '10.2.2.2')).code).toBe(0);
  });

  it('refuses a user name with a control character instead of stripping it', async () => {
    for (const name of ['alice\r', 'ali\tce', 'alice\x7f', 'alice\0']) {
      const result = await authn(name, 'right', '10.5.5.5');
      expect(result.code, JSON.stringify(name)).toBe(10);
    }
  });

  it('prunes rows whose window has passed and whose lockout has ended', async () => {
    await store.sql.query(`INSERT INTO login_failures (subject, failures, window_started_at, locked_until)
                           VALUES ('ip:10.77.0.1', 2, now() - interval '1 day', now() - interval '1 hour')`);
    // The function prunes on about one call in fifty.
    for (let i = 0; i < 400; i++) {
      await store.sql.query(`SELECT * FROM record_login_failure(ARRAY['ip:10.77.0.2'], 600, 1000000, 600)`);
      const left = await store.sql.query(`SELECT 1 FROM login_failures WHERE subject = 'ip:10.77.0.1'`);
      if (left.rowCount === 0) return;
    }
    throw new Error('the stale row was never pruned');
  });
});

describe('timing of refusals', () => {
  it('a hash below the configured cost does not make a known user quicker to refuse than an unknown one', async () => {
    // Cost 14 (about a second here): the padding's round then dwarfs Node's start, whose time a loaded machine
    // varies by hundreds of milliseconds.
    const costly = writeConfig(store.db.url, { bcrypt_cost: 14, lockout_max_failures: 0 });
    const weak = await bcryptHash('weak-password', 4);
    await store.sql.query(`INSERT INTO users (name, password_hash, daemon_group) VALUES ('weakling', $1, 'tenant1')`, [weak]);
    const timed = async (user: string) => {
      const started = performance.now();
      const result = await runPlexer(['authn'], {
        configPath: costly,
        input: `${user}\nwrong\n`,
        env: { PATH: '/usr/bin:/bin', IP: '10.6.6.6' },
      });
      expect(result.code).toBe(user === 'weakling' ? 12 : 11);
      return performance.now() - started;
    };
    const known: number[] = [];
    const unknown: number[] = [];
    for (let i = 0; i < 3; i++) {
      known.push(await timed('weakling'));
      unknown.push(await timed('nobody-here'));
    }
    const median = (xs: number[]) => xs.sort((a, b) => a - b)[1]!;
    // Unpadded, the known user costs one cost-4 round (about 1/1000 of the unknown one's cost-14 round): a third of
    // its time or less.
    expect(median(known)).toBeGreaterThan(median(unknown) * 0.6);
  });
});
