import type pg from 'pg';
import type { PlexerConfig } from '../config.js';
import type { Logger } from '../log.js';
import { ipSubject, knownSubject, lockedSubjects, pairSubject, recordFailure, userSubject, type LockoutPolicy } from './login-failures.js';
import { rethrowExplained } from './roles.js';

type Queryable = pg.ClientBase | pg.Pool;

// Who a failed login counts against, and when each is locked (lockout_* in the config file):
//   the user name from that address  pair:NAME/ADDR  at lockout_max_failures: a guesser stops only himself;
//   the address, whatever the names  ip:ADDR         at 3x: many names tried from one place (behind a NAT or a
//                                                    proxy without RemoteIPTrustedProxy, that is everyone);
//   the user name, from anywhere     user:NAME       at 10x: a distributed attack on one account. Rare and
//                                                    worth an operator's look, so it logs at error level.
// Without an address (none given, or not one) the user name takes the pair's limit.
export const ADDRESS_FACTOR = 3;
export const USER_FACTOR = 10;

export interface Throttle {
  maxFailures: number;
  windowSeconds: number;
  lockSeconds: number;
}

export function throttleOf(config: PlexerConfig): Throttle {
  return { maxFailures: config.lockoutMaxFailures, windowSeconds: config.lockoutWindowSeconds, lockSeconds: config.lockoutSeconds };
}

// An address as Apache gives it (REMOTE_ADDR, IP), or undefined when it is not one: never part of a subject then.
export function clientAddress(ip: string | undefined): string | undefined {
  return ip !== undefined && /^[0-9A-Fa-f:.]{2,45}$/.test(ip) ? ip : undefined;
}

export interface Subjects {
  user: string;
  // The subject a success clears (the pair, else the user name) and those it is locked by.
  own: string;
  all: string[];
  // With an address: the entry saying the user has logged in from it (exemptKnown).
  known?: string;
  limits: Array<{ subjects: string[]; maxFailures: number }>;
}

export function subjectsOf(user: string, address: string | undefined, throttle: Throttle): Subjects {
  const name = userSubject(user);
  if (address === undefined) {
    return { user: name, own: name, all: [name], limits: [{ subjects: [name], maxFailures: throttle.maxFailures }] };
  }
  const pair = pairSubject(user, address);
  const ip = ipSubject(address);
  return {
    user: name,
    own: pair,
    all: [pair, ip, name],
    known: knownSubject(user, address),
    limits: [
      { subjects: [pair], maxFailures: throttle.maxFailures },
      { subjects: [ip], maxFailures: throttle.maxFailures * ADDRESS_FACTOR },
      { subjects: [name], maxFailures: throttle.maxFailures * USER_FACTOR },
    ],
  };
}

// A refused login whose user name is not one (it never reaches the store): only the address counts.
export function addressOnly(address: string, throttle: Throttle): Subjects {
  const ip = ipSubject(address);
  return { user: ip, own: ip, all: [ip], limits: [{ subjects: [ip], maxFailures: throttle.maxFailures * ADDRESS_FACTOR }] };
}

// What to ask a store or a mirror about: the subjects, and whether the address is known for the user.
export const lookedUp = (subjects: Subjects): string[] => (subjects.known ? [...subjects.all, subjects.known] : subjects.all);

// The lockouts that hold, of those found among lookedUp(subjects): a lockout of the name alone does not hold at
// an address the user has logged in from (migration 009), and "known" is no lockout itself.
export function exemptKnown(found: string[], subjects: Subjects): string[] {
  if (subjects.known === undefined) return found;
  const known = found.includes(subjects.known);
  return found.filter((subject) => subject !== subjects.known && !(known && subject === subjects.user));
}

// The subjects locked right now; none when throttling is off.
export async function lockedNow(db: Queryable, subjects: Subjects, throttle: Throttle): Promise<string[]> {
  return throttle.maxFailures === 0 ? [] : exemptKnown(await lockedSubjects(db, lookedUp(subjects)), subjects);
}

// One failure against every subject, each with its own limit (record_login_failure, one statement per limit).
// Returns the subjects this failure locked; `counted` hears every subject's count.
export async function countFailure(
  db: Queryable,
  subjects: Subjects,
  throttle: Throttle,
  log: Logger,
  counted: (subject: string, failures: number) => void = () => undefined,
): Promise<string[]> {
  if (throttle.maxFailures === 0) return [];
  const counts = await Promise.all(
    subjects.limits.map(({ subjects: group, maxFailures }) =>
      recordFailure(db, group, { ...throttle, maxFailures } satisfies LockoutPolicy),
    ),
  );
  for (const count of counts.flat()) counted(count.subject, count.failures);
  const locked: string[] = [];
  for (const count of counts.flat()) {
    if (!count.lockedNow) continue;
    locked.push(count.subject);
    if (count.subject === subjects.user && subjects.own !== subjects.user) {
      log.error('account locked: failed logins from many addresses', {
        subject: count.subject,
        failures: count.failures,
        seconds: throttle.lockSeconds,
      });
    } else {
      log.warn('lockout started', { subject: count.subject, failures: count.failures, seconds: throttle.lockSeconds });
    }
  }
  return locked;
}

// After a successful login: that user's count from that address (and the name's own, as before) restart.
export async function clearOnSuccess(db: Queryable, subjects: Subjects, throttle: Throttle): Promise<void> {
  if (throttle.maxFailures === 0) return;
  await db
    .query({
      name: 'plexer_clear_on_success',
      text: 'SELECT subject FROM clear_login_failures($1::text[])',
      values: [[...new Set([subjects.own, subjects.user])]],
    })
    .catch(rethrowExplained);
}
