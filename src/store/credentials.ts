import type pg from 'pg';
import { rethrowExplained } from './roles.js';

// What the authenticator and the role check read. One primary-key probe each.
export interface Credential {
  passwordHash: string;
  disabled: boolean;
}

export async function fetchCredential(db: pg.ClientBase | pg.Pool, user: string): Promise<Credential | null> {
  const result = await db
    .query<{ password_hash: string; disabled: boolean }>({
      name: 'plexer_credential',
      text: 'SELECT password_hash, disabled FROM users WHERE name = $1',
      values: [user],
    })
    .catch(rethrowExplained);
  const row = result.rows[0];
  return row ? { passwordHash: row.password_hash, disabled: row.disabled } : null;
}

// True when the user is enabled and holds at least one of the roles.
export async function hasAnyRole(db: pg.ClientBase | pg.Pool, user: string, roles: string[]): Promise<boolean> {
  const result = await db
    .query({
      name: 'plexer_has_role',
      text: `SELECT 1 FROM users u JOIN user_roles r ON r.user_name = u.name
            WHERE u.name = $1 AND NOT u.disabled AND r.role = ANY($2::text[]) LIMIT 1`,
      values: [user, roles],
    })
    .catch(rethrowExplained);
  return (result.rowCount ?? 0) > 0;
}

// Rehash on login: only if nobody changed the hash meanwhile, and only to a stronger bcrypt hash (checked by
// rehash_password, migration 003, the one write to users the helpers' role is granted). False when the stored
// hash had changed.
export async function upgradePasswordHash(db: pg.ClientBase | pg.Pool, user: string, oldHash: string, newHash: string): Promise<boolean> {
  const result = await db
    .query<{ replaced: boolean }>({
      name: 'plexer_rehash_password',
      text: 'SELECT rehash_password($1, $2, $3) AS replaced',
      values: [user, oldHash, newHash],
    })
    .catch(rethrowExplained);
  return result.rows[0]?.replaced === true;
}
