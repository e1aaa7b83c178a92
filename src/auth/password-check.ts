// The password check behind `plexer authn` and `plexer authd`, one policy for both:
//   a user name that is not one, and a name that does not exist, cost the same bcrypt work as a wrong password
//   (dummyHash), so the timing does not tell which names exist; a lockout answers before any password is
//   verified; a refusal counts against the user name and the address (store/throttle.ts); a disabled user is
//   refused only after the password verified; a success clears the count and replaces a weak stored hash (a
//   lower bcrypt cost, or an imported $apr1$/{SHA}) with a bcrypt one at the configured cost.
// What differs between the two is given: where bcrypt runs, and whether refusals are counted here.
import type pg from 'pg';
import { coerceError } from '../errors.js';
import type { LogFields, Logger } from '../log.js';
import { isUserName } from '../names.js';
import { bcryptCost, checkNewPassword, dummyHash, refusalNeedsPadding } from '../password.js';
import { fetchCredential, upgradePasswordHash } from '../store/credentials.js';
import { clearOnSuccess, clientAddress, countFailure, lockedNow, subjectsOf, type Throttle } from '../store/throttle.js';
import { accept, failure, refuse, type Outcome } from './outcome.js';

export interface PasswordCheck {
  db: pg.ClientBase | pg.Pool;
  log: Logger;
  throttle: Throttle;
  // The cost of new hashes, of the dummy verification and below which a stored hash is replaced.
  bcryptCost: number;
  // False when `plexer lockout` counts every refusal from Apache's log instead (authn --counted-by-log).
  countFailures: boolean;
  // password.ts verifyPassword, with bcrypt in this thread or in worker threads.
  verify(password: string, hash: string): Promise<boolean>;
  // A fresh bcrypt hash at `cost`.
  hash(password: string, cost: number): Promise<string>;
}

export interface Checked extends Outcome {
  // Settles (never rejects) once a weak stored hash has been replaced; a process about to exit waits for it.
  rehashed: Promise<void>;
}

const done = Promise.resolve();

// Throws when the store cannot be read or bcrypt cannot run: see refuseOnError.
export async function checkPassword(check: PasswordCheck, user: string, password: string, ip: string | undefined): Promise<Checked> {
  const { log, throttle } = check;
  const refused = (reason: string, extra: LogFields = {}): Checked => ({ ...refusal(log, reason, user, ip, extra), rehashed: done });
  if (!isUserName(user)) {
    await check.verify(password, dummyHash(check.bcryptCost)).catch(() => false);
    return refused('invalid-user-name');
  }
  // The address comes from Apache: the connection's peer, or what mod_remoteip took from a trusted proxy.
  const subjects = subjectsOf(user, clientAddress(ip), throttle);
  const locked = await lockedNow(check.db, subjects, throttle);
  if (locked.length > 0) return refused('locked-out', { locked: locked.join(' ') });
  const credential = await fetchCredential(check.db, user);
  const verified = await check.verify(password, credential?.passwordHash ?? dummyHash(check.bcryptCost));
  if (!credential || !verified) {
    if (credential && refusalNeedsPadding(credential.passwordHash, check.bcryptCost)) {
      await check.verify(password, dummyHash(check.bcryptCost));
    }
    if (check.countFailures) await countFailure(check.db, subjects, throttle, log);
    return refused(credential ? 'wrong-password' : 'no-such-user');
  }
  if (credential.disabled) return refused('disabled');
  await clearOnSuccess(check.db, subjects, throttle);
  log.debug('login accepted', { user, ip });
  return { ...accept('verified'), rehashed: rehashIfWeak(check, user, password, credential.passwordHash) };
}

// The login stands whatever happens here: the password was right.
async function rehashIfWeak(check: PasswordCheck, user: string, password: string, stored: string): Promise<void> {
  const cost = bcryptCost(stored) ?? 0;
  if (cost >= check.bcryptCost) return;
  try {
    checkNewPassword(password);
    await upgradePasswordHash(check.db, user, stored, await check.hash(password, check.bcryptCost));
    check.log.info('password rehashed at the configured cost', { user, from: cost, to: check.bcryptCost });
  } catch (error) {
    check.log.warn('cannot rehash password', { user, error: coerceError(error).message });
  }
}

export function refusal(log: Logger, reason: string, user: string, ip: string | undefined, extra: LogFields = {}): Outcome {
  log.warn('login refused', { reason, user: isUserName(user) ? user : undefined, ip, ...extra });
  return refuse(reason);
}

// Fail closed: a check that could not be made refuses.
export function refuseOnError(log: Logger, error: unknown, user: string, ip: string | undefined): Outcome {
  log.error('cannot check password; refusing', { user: isUserName(user) ? user : undefined, error: coerceError(error).message, ip });
  return failure('store-error');
}
