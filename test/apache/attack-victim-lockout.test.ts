// A victim keeps access from where she already logs in (issue "walls"): 10 wrong guesses from each of 10
// addresses (100 in 0.12 s) locked bob's name everywhere for 900 s, and with IPv6 anyone has addresses enough.
// Now an address bob has logged in from is known for 90 days (migration 009), and the lockout of his name alone
// does not hold there; everywhere else it does, as do the pair and address lockouts.
import { existsSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { TestFront } from '../helpers/front.js';
import { startLockoutFront, whoamiFrom } from '../helpers/lockout-front.js';
import { waitFor } from '../helpers/wait.js';

const MAX_FAILURES = 3; // the name alone is locked at 10x: 30 failures
let t: TestFront;
let lockDir: string;

beforeAll(async () => {
  ({ t, lockDir } = await startLockoutFront([], MAX_FAILURES));
}, 120_000);

afterAll(() => t?.close());

const as = (user: string, password: string, from: string) => whoamiFrom(t, user, password, from);

describe('a distributed guess at one name (real Apache, generated Basic config)', () => {
  it('locks the name where its owner has never logged in, never where she has', async () => {
    // bob logs in from home: the first check of his password is plexer's (the cache has nothing yet).
    expect((await as('bob', 'bob-pw', '10.95.0.1')).status).toBe(200);
    await waitFor(
      async () => (await t.store.sql.query("SELECT 1 FROM login_failures WHERE subject = 'known:bob/10.95.0.1'")).rowCount,
      5_000,
      'his address to be known',
    );
    // 30 wrong passwords, 3 from each of 10 other addresses: each pair stops at its limit, and the name is locked.
    for (let a = 1; a <= 10; a++)
      for (let g = 0; g < MAX_FAILURES; g++) expect((await as('bob', `g${a}-${g}`, `10.96.0.${a}`)).status).toBe(401);
    await waitFor(() => existsSync(join(lockDir, 'user', 'bob')), 5_000, "the lock of bob's name");
    expect(existsSync(join(lockDir, 'known', '10.95.0.1', 'bob'))).toBe(true);

    // From home he is served; from an address he has never used, his right password is refused.
    for (let i = 0; i < 5; i++) expect((await as('bob', 'bob-pw', '10.95.0.1')).status).toBe(200);
    expect((await as('bob', 'bob-pw', '10.95.0.2')).status).toBe(401);
    // His logins at home do not lift the lock of his name elsewhere.
    expect((await as('bob', 'bob-pw', '10.95.0.2')).status).toBe(401);
    const { rows } = await t.store.sql.query("SELECT locked_until > now() AS locked FROM login_failures WHERE subject = 'user:bob'");
    expect(rows).toEqual([{ locked: true }]);
    // And alice, whose name nobody guessed, is not touched.
    expect((await as('alice', 'alice-pw', '10.95.0.2')).status).toBe(200);
  }, 60_000);
});
