// Parallel guesses against authd's lockout (issue "walls"): a check read the lockout state before bcrypt and
// recorded its failure after it, so 40 concurrent requests for carol (39 wrong, 1 right, limit 10) all read
// "not locked": 27 wrong passwords were checked and the right one was let in. One user's and one address's
// cold checks now run in turn (src/authd/subject-queue.ts): the limit holds exactly, however many arrive at once.
import type pg from 'pg';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { AuthService, turnKeys } from '../../src/authd/service.js';
import { loadConfig, type PlexerConfig } from '../../src/config.js';
import type { Logger } from '../../src/log.js';
import { createPool } from '../../src/store/connect.js';
import { freshStore, runPlexer, type TestStore } from '../helpers/plexer.js';

const LIMIT = 10;
const quiet: Logger = { debug: () => undefined, info: () => undefined, warn: () => undefined, error: () => undefined, scope: () => quiet };
let store: TestStore;
let config: PlexerConfig;
let db: pg.Pool;
let service: AuthService;

beforeAll(async () => {
  store = await freshStore({ lockout_max_failures: LIMIT, lockout_window_seconds: 600, lockout_seconds: 600 });
  config = loadConfig({ path: store.configPath, env: {} });
  db = createPool(config, { applicationName: 'parallel-guesses-test' });
  await runPlexer(['group', 'add', 't1'], { configPath: store.configPath });
  for (const name of ['carol', 'dave']) {
    const added = await runPlexer(['user', 'add', name, '--group', 't1', '--password-stdin'], {
      configPath: store.configPath,
      input: `pw-${name}\n`,
    });
    expect(added.code).toBe(0);
  }
  service = new AuthService({ db, config, log: quiet, listening: () => true, bcryptThreads: 2 });
}, 60_000);

afterAll(async () => {
  await service?.close();
  await db?.end();
  await store?.close();
});

const failures = async (subject: string): Promise<number> =>
  (await store.sql.query('SELECT failures FROM login_failures WHERE subject = $1', [subject])).rows[0]?.failures ?? 0;

describe("authd's lockout under parallel guesses (real store, real bcrypt)", () => {
  it('40 at once from one address: exactly the limit of wrong passwords checked, none let in after it', async () => {
    const right = 25; // the right password arrives among them, after the limit has been reached
    const before = service.stats().bcryptRuns;
    const outcomes = await Promise.all(
      Array.from({ length: 40 }, (_, i) => service.authenticate('carol', i === right ? 'pw-carol' : `guess-${i}`, '10.90.0.1')),
    );
    const wrongAccepted = outcomes.filter((o, i) => i !== right && o.verdict === 'accept');
    expect(wrongAccepted).toEqual([]);
    expect(await failures('pair:carol/10.90.0.1')).toBe(LIMIT);
    // In arrival order: the 10 wrong ones before the right one locked the pair, so the right one is refused too.
    expect(outcomes[right]).toMatchObject({ verdict: 'refuse', reason: 'locked-out' });
    // bcrypt ran for the checks before the lock, never after it.
    expect(service.stats().bcryptRuns - before).toBe(LIMIT);
  }, 60_000);

  it('many names from one address: the address limit (3x) holds exactly too', async () => {
    const outcomes = await Promise.all(Array.from({ length: 50 }, (_, i) => service.authenticate(`nobody${i}`, 'x', '10.90.0.2')));
    expect(outcomes.every((o) => o.verdict === 'refuse')).toBe(true);
    expect(await failures('ip:10.90.0.2')).toBe(3 * LIMIT);
  }, 60_000);

  it('checks of other users and addresses do not wait for a guessed one', async () => {
    // Order, not time: carol's check, made after 20 for dave were queued, must not come after all of them.
    const finished: string[] = [];
    const slow = Array.from({ length: 20 }, (_, i) =>
      Promise.resolve(service.authenticate('dave', `guess-${i}`, '10.90.0.3')).then(() => finished.push('dave')),
    );
    const other = await service.authenticate('carol', 'pw-carol', '10.90.0.4');
    finished.push('carol');
    await Promise.all(slow);
    expect(other.verdict).toBe('accept');
    console.log(
      `carol's check finished ${finished.indexOf('carol') + 1} of 21, behind ${finished.indexOf('carol')} of dave's queued guesses`,
    );
    expect(finished.indexOf('carol')).toBeLessThan(20);
  }, 60_000);

  it('checks whose refusals Apache counts (the checker for authn --counted-by-log) wait behind their user only', () => {
    // Counting here: the user and the address, so the limits above hold exactly.
    expect(turnKeys('carol', '10.90.0.5', true, LIMIT)).toEqual(['u\0carol', 'a\u000010.90.0.5']);
    // Counted by Apache's refusal page before the answer, as for authn on its own: a crowd behind one address is
    // not checked one at a time.
    expect(turnKeys('carol', '10.90.0.5', false, LIMIT)).toEqual(['u\0carol']);
    expect(turnKeys('carol', '10.90.0.5', true, 0)).toEqual([]);
  });

  it('a name locked by guesses from many addresses still lets its owner in where she has logged in', async () => {
    expect((await service.authenticate('dave', 'pw-dave', '10.91.0.1')).verdict).toBe('accept');
    // 10 guesses from each of 10 addresses: the name alone is locked at 10x the limit.
    await Promise.all(
      Array.from({ length: 10 }, (_, a) =>
        Promise.all(Array.from({ length: LIMIT }, (_, g) => service.authenticate('dave', `g${g}`, `10.91.1.${a}`))),
      ),
    );
    expect(await failures('user:dave')).toBe(10 * LIMIT);
    // From where she logged in: in (her credential is cached, the lockouts come from the store).
    expect(await service.authenticate('dave', 'pw-dave', '10.91.0.1')).toMatchObject({ verdict: 'accept' });
    // From anywhere else: refused, the right password too.
    expect(await service.authenticate('dave', 'pw-dave', '10.91.0.2')).toMatchObject({ verdict: 'refuse', reason: 'locked-out' });
  }, 60_000);
});
