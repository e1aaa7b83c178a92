import type pg from 'pg';
import { coerceError, ConfigError, PermissionDeniedError, RefusedError, UsageError } from '../errors.js';
import { quoteIdentifier } from './sql.js';

// What Apache's helpers (maps, authn, authz, authd, sync) read. Whole tables rather than column lists: the only
// secret in them, users.password_hash, is exactly what the authenticator must read, and a column list would
// turn every new column a helper starts to read into a "permission denied" on a live server.
export const HELPER_TABLES = ['users', 'daemon_groups', 'user_roles', 'login_failures'] as const;

// The helpers' only writes (migration 003): each checks its arguments and runs with the owner's rights.
export const HELPER_FUNCTIONS = [
  'record_login_failure(text[], integer, integer, integer)',
  'clear_login_failures(text[], text[])',
  'rehash_password(text, text, text)',
  // mod_session_dbd's statements (migration 006): Apache's children connect as the helpers' role.
  'session_load(text, bigint)',
  'session_insert(text, bigint, text)',
  'session_update(text, bigint, text, text)',
  'session_delete(text)',
] as const;

const ROLE_NAME = /^[a-z_][a-z0-9_]{0,62}$/;

export interface GrantOptions {
  // Create the role with LOGIN (a role to connect as), or add LOGIN to an existing one. Without it a new role
  // is NOLOGIN: a group role to GRANT to the login roles of your choice.
  login?: boolean;
}

export interface GrantOutcome {
  role: string;
  created: boolean;
  loginAdded: boolean;
}

interface RoleRow {
  oid: string;
  rolsuper: boolean;
  rolcreatedb: boolean;
  rolcreaterole: boolean;
  rolreplication: boolean;
  rolbypassrls: boolean;
  rolcanlogin: boolean;
}

// Makes `role` able to do exactly what the helpers do in `schema`, and nothing else: it revokes whatever
// else it had on the schema's tables, sequences and functions first, so running it again is harmless and
// repairs a hand-made grant. One transaction.
export async function grantHelperRole(
  client: pg.ClientBase,
  schema: string,
  role: string,
  options: GrantOptions = {},
): Promise<GrantOutcome> {
  if (!ROLE_NAME.test(role)) {
    throw new UsageError(`--helper-role "${role}": expected a lower-case SQL identifier (letters, digits, _; at most 63)`);
  }
  const s = quoteIdentifier(schema);
  const r = quoteIdentifier(role);
  await client.query('BEGIN');
  try {
    await client.query('SELECT pg_advisory_xact_lock(hashtext($1))', [`plexer.grant:${schema}`]);
    const missing = await client.query<{ fn: string }>(
      "SELECT fn FROM unnest($1::text[]) AS fn WHERE to_regprocedure($2 || '.' || fn) IS NULL",
      [HELPER_FUNCTIONS, s],
    );
    if ((missing.rowCount ?? 0) > 0) {
      throw new RefusedError(
        `schema "${schema}" lacks ${missing.rows.map((row) => row.fn.split('(')[0]).join(', ')}: run \`plexer db migrate\` first`,
      );
    }

    let existing = await readRole(client, role);
    let created = false;
    if (!existing) {
      // A savepoint: another database on the same server may create the same role at this moment (roles are
      // cluster-wide, the advisory lock is not).
      await client.query('SAVEPOINT create_role');
      try {
        await client.query(
          `CREATE ROLE ${r} ${options.login ? 'LOGIN' : 'NOLOGIN'} NOSUPERUSER NOCREATEDB NOCREATEROLE NOREPLICATION NOBYPASSRLS`,
        );
        created = true;
      } catch (error) {
        await client.query('ROLLBACK TO SAVEPOINT create_role');
        const code = (error as { code?: string }).code;
        if (code === '42501') {
          throw new PermissionDeniedError(
            `cannot create role "${role}": ${coerceError(error).message}. The admin role needs ` +
              `no CREATEROLE for plexer otherwise, so create the role once as a superuser (psql: CREATE ROLE ${role} ` +
              `${options.login ? 'LOGIN' : 'NOLOGIN'};) and run this command again`,
          );
        }
        if (code !== '42710' && code !== '23505') throw error;
      }
      existing = await readRole(client, role);
      if (!existing) throw new RefusedError(`role "${role}" vanished while it was being granted; run the command again`);
    }

    const powers = [
      existing.rolsuper && 'SUPERUSER',
      existing.rolcreatedb && 'CREATEDB',
      existing.rolcreaterole && 'CREATEROLE',
      existing.rolreplication && 'REPLICATION',
      existing.rolbypassrls && 'BYPASSRLS',
    ].filter((p): p is string => typeof p === 'string');
    if (powers.length > 0) {
      throw new RefusedError(
        `role "${role}" has ${powers.join(', ')}; the helpers' role must have none. Pick another ` +
          `name, or as a superuser: ALTER ROLE ${role} ${powers.map((p) => `NO${p}`).join(' ')};`,
      );
    }
    const owns = await client.query<{ what: string }>(
      `SELECT 'schema ' || n.nspname AS what FROM pg_namespace n
        WHERE n.nspname = $2 AND (n.nspowner = $1::oid OR pg_has_role($1::oid, n.nspowner, 'MEMBER'))
       UNION ALL
       SELECT c.relname FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
        WHERE n.nspname = $2 AND (c.relowner = $1::oid OR pg_has_role($1::oid, c.relowner, 'MEMBER'))
       UNION ALL
       SELECT p.proname FROM pg_proc p JOIN pg_namespace n ON n.oid = p.pronamespace
        WHERE n.nspname = $2 AND (p.proowner = $1::oid OR pg_has_role($1::oid, p.proowner, 'MEMBER'))
       LIMIT 5`,
      [existing.oid, schema],
    );
    if ((owns.rowCount ?? 0) > 0) {
      throw new RefusedError(
        `role "${role}" owns (or is a member of the owner of) ${owns.rows.map((row) => row.what).join(', ')}; ` +
          'the helpers need a role of their own that owns nothing: pick another name for --helper-role',
      );
    }

    let loginAdded = false;
    if (options.login && !existing.rolcanlogin) {
      await client.query(`ALTER ROLE ${r} LOGIN`).catch((error: Error & { code?: string }) => {
        if (error.code !== '42501') throw error;
        throw new PermissionDeniedError(`cannot add LOGIN to role "${role}": ${error.message}. As a superuser: ALTER ROLE ${role} LOGIN;`);
      });
      loginAdded = true;
    }

    // CONNECT usually comes from PUBLIC already; granting it needs the database's owner, who may not be the
    // schema's, so only when it is missing.
    const database = await client.query<{ name: string; can_connect: boolean }>(
      `SELECT current_database() AS name, has_database_privilege($1, current_database(), 'CONNECT') AS can_connect`,
      [role],
    );
    await client.query(`REVOKE ALL ON ALL TABLES IN SCHEMA ${s} FROM ${r}`);
    await client.query(`REVOKE ALL ON ALL SEQUENCES IN SCHEMA ${s} FROM ${r}`);
    await client.query(`REVOKE ALL ON ALL FUNCTIONS IN SCHEMA ${s} FROM ${r}`);
    await client.query(`REVOKE ALL ON SCHEMA ${s} FROM ${r}`);
    if (!database.rows[0]!.can_connect) await client.query(`GRANT CONNECT ON DATABASE ${quoteIdentifier(database.rows[0]!.name)} TO ${r}`);
    await client.query(`GRANT USAGE ON SCHEMA ${s} TO ${r}`);
    await client.query(`GRANT SELECT ON ${HELPER_TABLES.map((t) => `${s}.${t}`).join(', ')} TO ${r}`);
    await client.query(`GRANT EXECUTE ON FUNCTION ${HELPER_FUNCTIONS.map((f) => `${s}.${f}`).join(', ')} TO ${r}`);
    await client.query('COMMIT');
    return { role, created, loginAdded };
  } catch (error) {
    await client.query('ROLLBACK').catch(() => undefined);
    if ((error as { code?: string }).code === '42501') {
      throw new PermissionDeniedError(
        `${coerceError(error).message}: \`plexer db grant\` must run as the role that owns ` +
          `schema "${schema}" (admin_pg_user), or a superuser`,
      );
    }
    throw error;
  }
}

async function readRole(client: pg.ClientBase, role: string): Promise<RoleRow | undefined> {
  const result = await client.query<RoleRow>(
    `SELECT oid::text AS oid, rolsuper, rolcreatedb, rolcreaterole, rolreplication, rolbypassrls, rolcanlogin
       FROM pg_roles WHERE rolname = $1`,
    [role],
  );
  return result.rows[0];
}

// For the helpers' queries: PostgreSQL's bare "permission denied" or "function … does not exist" tells an
// operator reading Apache's error log nothing about the fix.
export function explainHelperError(error: unknown): unknown {
  const code = (error as { code?: string }).code;
  const message = coerceError(error).message;
  if (code === '42501') {
    return new PermissionDeniedError(
      `${message}: the helpers' role (pg_user) lacks its grants; as the admin run ` +
        '`plexer db grant --helper-role ROLE` with ROLE = pg_user (or a role pg_user is a member of)',
    );
  }
  // Without USAGE on the schema its tables are not even seen.
  if (code === '42P01') {
    return new ConfigError(
      `${message}: either pg_user lacks USAGE on plexer's schema (as the admin run \`plexer db grant ` +
        '--helper-role ROLE` with ROLE = pg_user) or the schema is not there (`plexer db migrate`; the `schema` setting)',
    );
  }
  if (code === '42883' && /record_login_failure|clear_login_failures|rehash_password/.test(message)) {
    return new ConfigError(`${message}: the schema predates migration 003; run \`plexer db migrate\` as the admin`);
  }
  return error;
}

export const rethrowExplained = (error: unknown): never => {
  throw explainHelperError(error);
};
