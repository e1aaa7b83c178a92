import type pg from 'pg';

// The lockout read for a credential the daemon verified recently (src/store/login-failures.ts holds the
// rest): which of `subjects` are locked out now, and — only when none is — the user's failure count reset,
// as `plexer authn` does after every successful login. One round trip; the DELETE finds nothing (and writes
// nothing) in the usual case.
export async function lockedSubjectsClearingUser(db: pg.ClientBase | pg.Pool, subjects: string[], userSubject: string): Promise<string[]> {
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
