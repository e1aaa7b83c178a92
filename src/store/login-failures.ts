import type pg from 'pg';

type Queryable = pg.ClientBase | pg.Pool;

export interface LockoutPolicy {
  maxFailures: number;
  windowSeconds: number;
  lockSeconds: number;
}

export const userSubject = (user: string) => `user:${user}`;
export const ipSubject = (ip: string) => `ip:${ip}`;

// The subjects (of those given) that are locked out right now.
export async function lockedSubjects(db: Queryable, subjects: string[]): Promise<string[]> {
  const result = await db.query<{ subject: string }>({
    name: 'plexer_locked_subjects',
    text: 'SELECT subject FROM login_failures WHERE subject = ANY($1::text[]) AND locked_until > now()',
    values: [subjects],
  });
  return result.rows.map((row) => row.subject);
}

export interface FailureCount {
  subject: string;
  failures: number;
  lockedNow: boolean;
}

// Counts one failure for each subject within a sliding window that restarts once it has passed; reaching
// maxFailures locks the subject for lockSeconds. One statement, so concurrent front ends count exactly.
export async function recordFailure(db: Queryable, subjects: string[], policy: LockoutPolicy): Promise<FailureCount[]> {
  const result = await db.query<{ subject: string; failures: number; locked_now: boolean }>({
    name: 'plexer_record_failure',
    text: `INSERT INTO login_failures AS f (subject, failures)
           SELECT unnest($1::text[]), 1
           ON CONFLICT (subject) DO UPDATE SET
             failures = CASE WHEN f.window_started_at < now() - make_interval(secs => $2) THEN 1 ELSE f.failures + 1 END,
             window_started_at = CASE WHEN f.window_started_at < now() - make_interval(secs => $2) THEN now()
                                      ELSE f.window_started_at END
           RETURNING subject, failures, false AS locked_now`,
    values: [subjects, policy.windowSeconds],
  });
  const reached = result.rows.filter((row) => row.failures >= policy.maxFailures).map((row) => row.subject);
  if (reached.length > 0) {
    await db.query({
      name: 'plexer_lock_subjects',
      text: `UPDATE login_failures SET locked_until = now() + make_interval(secs => $2)
              WHERE subject = ANY($1::text[])`,
      values: [reached, policy.lockSeconds],
    });
  }
  return result.rows.map((row) => ({ subject: row.subject, failures: row.failures, lockedNow: reached.includes(row.subject) }));
}

export async function clearFailures(db: Queryable, subject: string): Promise<boolean> {
  const result = await db.query('DELETE FROM login_failures WHERE subject = $1', [subject]);
  return (result.rowCount ?? 0) > 0;
}

// For a credential authd verified recently: which of `subjects` are locked out now, and — only when none
// is — the user's failure count reset, as `plexer authn` does after every successful login. One round trip;
// the DELETE finds nothing (and writes nothing) in the usual case.
export async function lockedSubjectsClearingUser(db: Queryable, subjects: string[], userSubject: string): Promise<string[]> {
  const result = await db.query<{ subject: string }>({
    name: 'plexer_authd_locked_or_clear',
    text: `WITH locked AS (
             SELECT subject FROM login_failures WHERE subject = ANY($1::text[]) AND locked_until > now()
           ), cleared AS (
             DELETE FROM login_failures WHERE subject = $2 AND NOT EXISTS (SELECT 1 FROM locked) RETURNING 1
           )
           SELECT subject FROM locked`,
    values: [subjects, userSubject],
  });
  return result.rows.map((row) => row.subject);
}
