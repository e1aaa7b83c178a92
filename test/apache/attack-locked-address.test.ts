// A locked address costs nothing (issue "walls"): before, the lock files were checked after authentication, so
// every guess from a locked address with a name the cache did not know still started `plexer authn` (0.35 CPU-s
// each; 175 of 215 requests of an attack round were refused as locked-out after starting Node). Now the address
// lock is checked first, in the vhost's rewrite phase: 429, no helper, the same answer for any name or password.
import { existsSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { cliOk, type TestFront } from '../helpers/front.js';
import { startLockoutFront, whoamiFrom } from '../helpers/lockout-front.js';
import { waitFor } from '../helpers/wait.js';

const MAX_FAILURES = 2; // the address alone is locked at 3×: 6 failures
const GUESSER = '10.70.0.1';
let t: TestFront;
let lockDir: string;

beforeAll(async () => {
  ({ t, lockDir } = await startLockoutFront([], MAX_FAILURES));
}, 120_000);

afterAll(() => t?.close());

const guess = (user: string, password: string, from = GUESSER) => whoamiFrom(t, user, password, from);

// One line per password check `plexer authn` made (it logs every refusal).
const authnChecks = () => (t.front.httpd.errorLog().match(/authn warn: login refused/g) ?? []).length;

describe('a locked address (real Apache, generated Basic config)', () => {
  it('is refused before authentication: 429 for every name and password, no helper started, nothing counted', async () => {
    const lockFile = join(lockDir, 'ip', GUESSER);
    for (let i = 0; !existsSync(lockFile); i++) {
      expect(i, 'the address should be locked after 3 x lockout_max_failures').toBeLessThan(3 * MAX_FAILURES + 2);
      expect((await guess(`nobody${i}`, 'guess')).status).toBe(401);
    }
    // authn has logged what it checked, and the store has counted the address up to its lockout (the lockout
    // counts in the store one failure at a time, after the lock file: the last may still be on its way).
    await waitFor(async () => authnChecks() >= 3 * MAX_FAILURES, 5_000, "authn's lines for the guesses");
    await waitFor(
      async () =>
        ((await t.store.sql.query('SELECT failures FROM login_failures WHERE subject = $1', [`ip:${GUESSER}`])).rows[0]?.failures ?? 0) >=
        3 * MAX_FAILURES,
      10_000,
      "the address's failures counted in the store",
    );
    const checksBefore = authnChecks();
    const failuresBefore = (await t.store.sql.query('SELECT sum(failures)::int AS n FROM login_failures')).rows[0].n;

    const answers = [];
    for (let i = 0; i < 20; i++) answers.push(await guess(`stranger${i}`, 'guess'));
    answers.push(await guess('alice', 'alice-pw'), await guess('alice', 'wrong'), await guess('bob', 'bob-pw'));
    expect(new Set(answers.map((a) => a.status))).toEqual(new Set([429]));
    // Right and wrong passwords get the very same page.
    expect(new Set(answers.map((a) => a.body)).size).toBe(1);
    expect(answers[0]!.body).toContain('plexer-error:429');

    expect(authnChecks(), 'a password check started for a locked address').toBe(checksBefore);
    const failuresAfter = (await t.store.sql.query('SELECT sum(failures)::int AS n FROM login_failures')).rows[0].n;
    expect(failuresAfter).toBe(failuresBefore);
  });

  it('is its own: other addresses keep logging in, and user unlock of the address ends it', async () => {
    expect((await guess('alice', 'alice-pw', '10.70.0.2')).status).toBe(200);
    await cliOk(t.cli, ['user', 'unlock', '--ip', GUESSER]);
    await waitFor(async () => (await guess('alice', 'alice-pw')).status === 200, 5_000, 'the address to be served again');
  });
});
