import type pg from 'pg';
import { rethrowExplained } from './roles.js';

type Queryable = pg.ClientBase | pg.Pool;

export interface LockoutPolicy {
  maxFailures: number;
  windowSeconds: number;
  lockSeconds: number;
}

export const userSubject = (user: string) => `user:${user}`;
export const ipSubject = (ip: string) => `ip:${ip}`;
// "/" is in neither a user name nor an address, so the pair splits one way only (CHECK in migration 005).
export const pairSubject = (user: string, ip: string) => `pair:${user}/${ip}`;
// Not a lockout: the user logged in from that address (migration 009), so a lockout of her name alone does not
// hold there. Its locked_until is when it stops being known.
export const knownSubject = (user: string, ip: string) => `known:${user}/${ip}`;

// The subjects (of those given) that are locked out right now.
export async function lockedSubjects(db: Queryable, subjects: string[]): Promise<string[]> {
  const result = await db
    .query<{ subject: string }>({
      name: 'plexer_locked_subjects',
      text: 'SELECT subject FROM login_failures WHERE subject = ANY($1::text[]) AND locked_until > now()',
      values: [subjects],
    })
    .catch(rethrowExplained);
  return result.rows.map((row) => row.subject);
}

export interface FailureCount {
  subject: string;
  failures: number;
  lockedNow: boolean;
}

// Counts one failure for each subject (see record_login_failure in migration 003). Helpers may not write the
// table themselves: the function is the one write their role is granted. One statement, so concurrent front
// ends count exactly.
export async function recordFailure(db: Queryable, subjects: string[], policy: LockoutPolicy): Promise<FailureCount[]> {
  const result = await db
    .query<{ subject: string; failures: number; locked_now: boolean }>({
      name: 'plexer_record_login_failure',
      text: 'SELECT subject, failures, locked_now FROM record_login_failure($1::text[], $2, $3, $4)',
      values: [subjects, policy.windowSeconds, policy.maxFailures, policy.lockSeconds],
    })
    .catch(rethrowExplained);
  return result.rows.map((row) => ({ subject: row.subject, failures: row.failures, lockedNow: row.locked_now }));
}

// `plexer user unlock` (an admin command, as the schema's owner): a user name's count and lockout and those
// of every pair of that name, or an address's and those of every pair from it. Returns the subjects cleared.
export async function unlockSubjects(db: Queryable, kind: 'user' | 'ip', value: string): Promise<string[]> {
  const result = await db.query<{ subject: string }>({
    text:
      kind === 'user'
        ? `DELETE FROM login_failures WHERE subject = 'user:' || $1 OR starts_with(subject, 'pair:' || $1 || '/') RETURNING subject`
        : `DELETE FROM login_failures WHERE subject = 'ip:' || $1
            OR (starts_with(subject, 'pair:') AND substr(subject, strpos(subject, '/') + 1) = $1) RETURNING subject`,
    values: [value],
  });
  return result.rows.map((row) => row.subject).sort();
}

// For a credential authd verified recently: which of `subjects` are locked out now, and — only when none
// is — the user's failure count reset, as `plexer authn` does after every successful login. One round trip;
// the function deletes nothing (and writes nothing) in the usual case.
export async function lockedSubjectsClearingUser(db: Queryable, subjects: string[], userSubject: string): Promise<string[]> {
  const result = await db
    .query<{ subject: string; locked: boolean }>({
      name: 'plexer_locked_or_clear',
      text: 'SELECT subject, locked FROM clear_login_failures($2::text[], $1::text[])',
      values: [subjects, [userSubject]],
    })
    .catch(rethrowExplained);
  return result.rows.filter((row) => row.locked).map((row) => row.subject);
}

// Every lockout in force, for authd's mirror (src/authd/lock-mirror.ts).
export async function currentLockouts(db: Queryable): Promise<Array<{ subject: string; untilMs: number }>> {
  const result = await db
    .query<{ subject: string; until_ms: string }>({
      name: 'plexer_current_lockouts',
      text: 'SELECT subject, floor(extract(epoch FROM locked_until) * 1000)::bigint AS until_ms FROM login_failures WHERE locked_until > now()',
    })
    .catch(rethrowExplained);
  return result.rows.map((row) => ({ subject: row.subject, untilMs: Number(row.until_ms) }));
}

export interface UserLockout {
  user: string;
  // The address the lockout holds for, or null: the name from everywhere.
  address: string | null;
  until: Date;
}

// The lockouts in force on user names (alone, or from one address), for `plexer user list`.
export async function userLockouts(db: Queryable): Promise<UserLockout[]> {
  const result = await db.query<{ user_name: string; address: string | null; locked_until: Date }>(
    `SELECT CASE WHEN starts_with(subject, 'user:') THEN substr(subject, 6) ELSE split_part(substr(subject, 6), '/', 1) END AS user_name,
            CASE WHEN starts_with(subject, 'pair:') THEN split_part(subject, '/', 2) END AS address, locked_until
       FROM login_failures
      WHERE locked_until > now() AND (starts_with(subject, 'user:') OR starts_with(subject, 'pair:'))
      ORDER BY locked_until`,
  );
  return result.rows.map((row) => ({ user: row.user_name, address: row.address, until: row.locked_until }));
}
