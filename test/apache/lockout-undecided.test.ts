// A refusal plexer authn gives without comparing the password (the store unreachable, its time limit reached on a
// busy machine) is answered 401 — mod_authnz_external knows no "try again" — but it is no guess: plexer lockout
// must not count it (src/lockout/excuses.ts). Real Apache with the generated Basic config: new connections of the
// helpers' role are refused (NOLOGIN), so every authn run fails to reach the store, while the lockout keeps the
// connection it has and would count each 401 in the store and lock the user, the address and the pair.
import { existsSync, readdirSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it, onTestFinished } from 'vitest';
import type { TestFront } from '../helpers/front.js';
import { startLockoutFront, whoamiFrom } from '../helpers/lockout-front.js';
import { waitFor } from '../helpers/wait.js';

const MAX_FAILURES = 3;
let t: TestFront;
let lockDir: string;

beforeAll(async () => {
  ({ t, lockDir } = await startLockoutFront(['carol'], MAX_FAILURES));
}, 120_000);

afterAll(async () => {
  await t?.close();
});

describe('refusals without a verdict', () => {
  it('are 401s that lock nobody out: no failure counted, no lock file, and the user gets in once the store answers', async () => {
    await t.store.sql.query(`ALTER ROLE ${t.store.helperRole} NOLOGIN`);
    onTestFinished(() => t.store.sql.query(`ALTER ROLE ${t.store.helperRole} LOGIN`).then(() => undefined));
    const from = '10.70.0.1';
    for (let i = 0; i < MAX_FAILURES * 3; i++) {
      const refused = await whoamiFrom(t, 'carol', 'carol-pw', from);
      expect(refused.status).toBe(401);
    }
    // Each run ended with the store's error and left its excuse, which the lockout took.
    await waitFor(
      () =>
        (t.front.httpd.errorLog().match(/AuthExtern plexer \[[^\]]*\]: Failed \(20\) for user carol/g) ?? []).length >= MAX_FAILURES * 3,
      10_000,
      "authn's store errors in the error log",
    );
    // Each excuse used up by the 401 it was left for (the empty directories go at the lockout's next sweep).
    const excused = join(lockDir, 'excused', from);
    await waitFor(() => !existsSync(excused) || readdirSync(excused).length === 0, 10_000, 'the excuses taken by plexer lockout');
    const { rows } = await t.store.sql.query(
      `SELECT subject, failures FROM login_failures WHERE subject LIKE '%carol%' OR subject LIKE '%${from}'`,
    );
    expect(rows).toEqual([]);
    for (const kind of ['user', 'ip', 'pair'])
      expect(existsSync(join(lockDir, kind)) ? readdirSync(join(lockDir, kind), { recursive: true }) : []).toEqual([]);

    await t.store.sql.query(`ALTER ROLE ${t.store.helperRole} LOGIN`);
    expect((await whoamiFrom(t, 'carol', 'carol-pw', from)).status).toBe(200);
  });

  it('a wrong password is still counted: the limit-th guess locks the pair', async () => {
    const from = '10.70.0.2';
    for (let i = 0; i < MAX_FAILURES; i++) expect((await whoamiFrom(t, 'carol', `guess-${i}`, from)).status).toBe(401);
    await waitFor(() => existsSync(join(lockDir, 'pair', from, 'carol')), 10_000, "carol's lock from the guessing address");
  });
});
