import type pg from 'pg';
import { NotFoundError, RefusedError } from '../errors.js';

// All SQL the admin commands run. Callers validate names first for friendly messages; the schema's CHECK and
// foreign-key constraints are the final word, and their violations are turned into RefusedError here.
// The daemon_groups table holds accounts (src/accounts/model.ts), its historic name from when an account and its
// mod_wsgi daemon group were one; users.daemon_group names a user's account. The CLI still says "group".

export interface AccountRow {
  name: string;
  settings_module: string | null;
  backend: string | null;
  capacity: number | null;
  enabled: boolean;
  // "user" or "user:group" the account's own slot runs as; null: Apache's run user.
  run_as: string | null;
  users: number;
}

export interface UserRow {
  name: string;
  daemon_group: string | null;
  disabled: boolean;
  roles: string[];
  created_at: Date;
  updated_at: Date;
}

export interface AccountFields {
  settingsModule?: string | null;
  backend?: string | null;
  capacity?: number | null;
  enabled?: boolean;
  runAs?: string | null;
}

type Queryable = pg.Pool | pg.ClientBase;

function refuseConstraint(error: unknown, what: string): never {
  const e = error as { code?: string; constraint?: string; detail?: string };
  if (e.code === '23505' && e.constraint === 'daemon_groups_run_as_user_unique') {
    throw new RefusedError(`${what}: its run-as user already runs another daemon group (one OS user per tenant; see plexer group list)`);
  }
  if (e.code === '23505') throw new RefusedError(`${what} already exists`);
  if (e.code === '23503' && e.constraint === 'users_daemon_group_fkey') {
    const group = /\(daemon_group\)=\((.*)\)/.exec(e.detail ?? '')?.[1] ?? '?';
    throw new NotFoundError(
      `${what}: no daemon group "${group}"; create it with \`plexer group add ${group}\` (see \`plexer group list\`)`,
    );
  }
  if (e.code === '23503') throw new RefusedError(`${what}: ${e.detail ?? 'a referenced row is missing or still in use'}`);
  if (e.code === '23514') throw new RefusedError(`${what}: rejected by constraint ${e.constraint ?? '(unknown)'}`);
  throw error;
}

async function run<R extends pg.QueryResultRow>(db: Queryable, what: string, text: string, values: unknown[]) {
  try {
    return await db.query<R>(text, values);
  } catch (error) {
    refuseConstraint(error, what);
  }
}

export async function addAccount(db: Queryable, name: string, fields: AccountFields): Promise<void> {
  await run(
    db,
    `daemon group "${name}"`,
    `INSERT INTO daemon_groups (name, settings_module, backend, capacity, enabled, run_as) VALUES ($1, $2, $3, $4, $5, $6)`,
    [name, fields.settingsModule ?? null, fields.backend ?? null, fields.capacity ?? null, fields.enabled ?? true, fields.runAs ?? null],
  );
}

export async function updateAccount(db: Queryable, name: string, fields: AccountFields): Promise<void> {
  const result = await run(
    db,
    `daemon group "${name}"`,
    `UPDATE daemon_groups SET
       settings_module = CASE WHEN $2 THEN $3 ELSE settings_module END,
       backend = CASE WHEN $4 THEN $5 ELSE backend END,
       capacity = CASE WHEN $6 THEN $7::integer ELSE capacity END,
       enabled = COALESCE($8, enabled),
       run_as = CASE WHEN $9 THEN $10 ELSE run_as END
     WHERE name = $1`,
    [
      name,
      fields.settingsModule !== undefined,
      fields.settingsModule ?? null,
      fields.backend !== undefined,
      fields.backend ?? null,
      fields.capacity !== undefined,
      fields.capacity ?? null,
      fields.enabled ?? null,
      fields.runAs !== undefined,
      fields.runAs ?? null,
    ],
  );
  if (result.rowCount === 0) throw new NotFoundError(`no daemon group "${name}"`);
}

export async function deleteAccount(db: Queryable, name: string): Promise<void> {
  const result = await db.query('DELETE FROM daemon_groups WHERE name = $1', [name]).catch((error: { code?: string }) => {
    if (error.code === '23503') throw new RefusedError(`daemon group "${name}" still has users: move or delete them first`);
    throw error;
  });
  if (result.rowCount === 0) throw new NotFoundError(`no daemon group "${name}"`);
}

// The token Apache sends the account's backend (migration 008); `rotate` replaces it first with a fresh random one.
export async function backendToken(db: Queryable, name: string, rotate: boolean): Promise<string> {
  const result = rotate
    ? await db.query<{ backend_token: string }>(
        'UPDATE daemon_groups SET backend_token = DEFAULT WHERE name = $1 RETURNING backend_token',
        [name],
      )
    : await db.query<{ backend_token: string }>('SELECT backend_token FROM daemon_groups WHERE name = $1', [name]);
  const row = result.rows[0];
  if (!row) throw new NotFoundError(`no daemon group "${name}"`);
  return row.backend_token;
}

export async function listAccounts(db: Queryable): Promise<AccountRow[]> {
  const result = await db.query<AccountRow>(
    `SELECT g.name, g.settings_module, g.backend, g.capacity, g.enabled, g.run_as, count(u.name)::integer AS users
       FROM daemon_groups g LEFT JOIN users u ON u.daemon_group = g.name
      GROUP BY g.name ORDER BY g.name`,
  );
  return result.rows;
}

export async function getAccount(db: Queryable, name: string): Promise<AccountRow> {
  const account = (await listAccounts(db)).find((row) => row.name === name);
  if (!account) throw new NotFoundError(`no daemon group "${name}"`);
  return account;
}

// The enabled account with the fewest users that still has room. The advisory lock serializes concurrent
// `--group auto` callers so two of them cannot both take an account's last place.
export async function pickAccountWithRoom(client: pg.ClientBase): Promise<string | null> {
  await client.query(`SELECT pg_advisory_xact_lock(hashtext('plexer.auto-group'))`);
  const result = await client.query<{ name: string }>(
    `SELECT g.name FROM daemon_groups g LEFT JOIN users u ON u.daemon_group = g.name
      WHERE g.enabled GROUP BY g.name, g.capacity
     HAVING g.capacity IS NULL OR count(u.name) < g.capacity
      ORDER BY count(u.name), g.name LIMIT 1`,
  );
  return result.rows[0]?.name ?? null;
}

export async function addUser(db: Queryable, name: string, passwordHash: string, account: string | null): Promise<void> {
  await run(db, `user "${name}"`, 'INSERT INTO users (name, password_hash, daemon_group) VALUES ($1, $2, $3)', [
    name,
    passwordHash,
    account,
  ]);
}

async function updateUser(db: Queryable, name: string, assignment: string, value: unknown): Promise<void> {
  const result = await run(db, `user "${name}"`, `UPDATE users SET ${assignment} WHERE name = $1`, [name, value]);
  if (result.rowCount === 0) throw new NotFoundError(`no user "${name}"`);
}

export const setPasswordHash = (db: Queryable, name: string, hash: string) => updateUser(db, name, 'password_hash = $2', hash);
export const moveUser = (db: Queryable, name: string, account: string | null) => updateUser(db, name, 'daemon_group = $2', account);
export const setUserDisabled = (db: Queryable, name: string, disabled: boolean) => updateUser(db, name, 'disabled = $2', disabled);

export async function deleteUser(db: Queryable, name: string): Promise<void> {
  const result = await db.query('DELETE FROM users WHERE name = $1', [name]);
  if (result.rowCount === 0) throw new NotFoundError(`no user "${name}"`);
}

export async function grantRole(db: Queryable, name: string, role: string): Promise<void> {
  await run(db, `user "${name}"`, 'INSERT INTO user_roles (user_name, role) VALUES ($1, $2) ON CONFLICT DO NOTHING', [name, role]);
}

export async function revokeRole(db: Queryable, name: string, role: string): Promise<boolean> {
  const result = await db.query('DELETE FROM user_roles WHERE user_name = $1 AND role = $2', [name, role]);
  return (result.rowCount ?? 0) > 0;
}

export async function listUsers(db: Queryable, account?: string): Promise<UserRow[]> {
  const result = await db.query<UserRow>(
    `SELECT u.name, u.daemon_group, u.disabled, u.created_at, u.updated_at,
            coalesce(array_agg(r.role ORDER BY r.role) FILTER (WHERE r.role IS NOT NULL), '{}') AS roles
       FROM users u LEFT JOIN user_roles r ON r.user_name = u.name
      WHERE $1::text IS NULL OR u.daemon_group = $1
      GROUP BY u.name ORDER BY u.name`,
    [account ?? null],
  );
  return result.rows;
}

export async function userExists(db: Queryable, name: string): Promise<boolean> {
  const result = await db.query('SELECT 1 FROM users WHERE name = $1', [name]);
  return (result.rowCount ?? 0) > 0;
}

// What to do with a name that already exists: report it (the line is refused), leave it, or replace its hash
// and account.
export type ExistingUsers = 'refuse' | 'skip' | 'update';

export interface ImportEntry {
  user: string;
  hash: string;
}

// One INSERT per batch (not one per user): 20,000 lines in a few round trips. Returns the names that already
// existed and were left as they are ('refuse' and 'skip').
export async function importUsers(
  db: Queryable,
  entries: ImportEntry[],
  account: string | null,
  existing: ExistingUsers,
): Promise<string[]> {
  const onConflict =
    existing === 'update' ? 'DO UPDATE SET password_hash = EXCLUDED.password_hash, daemon_group = EXCLUDED.daemon_group' : 'DO NOTHING';
  const result = await run<{ name: string }>(
    db,
    `importing into daemon group "${account ?? 'none'}"`,
    `INSERT INTO users (name, password_hash, daemon_group)
     SELECT n, h, $3 FROM unnest($1::text[], $2::text[]) AS t(n, h)
     ON CONFLICT (name) ${onConflict} RETURNING name`,
    [entries.map((e) => e.user), entries.map((e) => e.hash), account],
  );
  const written = new Set(result.rows.map((row) => row.name));
  return entries.filter((e) => !written.has(e.user)).map((e) => e.user);
}

export async function accountExists(db: Queryable, name: string): Promise<boolean> {
  const result = await db.query('SELECT 1 FROM daemon_groups WHERE name = $1', [name]);
  return (result.rowCount ?? 0) > 0;
}
