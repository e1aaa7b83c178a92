// What a failed first query means for an operator, one rule for every admin command and `plexer doctor`:
// the server cannot be reached, it refused our credentials (and which config keys hold them), the database
// or plexer's schema is missing, or something else (kept as it was).
import { APACHE_RUN_USER } from '../tenant-users.js';
import type { PlexerConfig } from '../config.js';
import { coerceError, ConfigError, StoreUnavailableError, type PlexerError } from '../errors.js';
import { describeTarget } from './connect.js';

type PgError = Error & { code?: string };

// SQLSTATEs: 28P01 invalid_password, 28000 invalid_authorization_specification (pg_hba.conf, peer mismatch).
const AUTH_CODES = new Set(['28P01', '28000']);
// node-postgres's own wording when the server asks for a password and none is configured.
const NO_PASSWORD = /client password must be a string|password authentication failed|no password supplied/i;

// `admin`: the identity the command connected as (adminConfig's), to name the keys that hold its password.
// `role`: whose login failed, the schema's owner (admin_pg_user, the CLI) or the helpers' (pg_user, what Apache's
// helpers and doctor's check of them use): the hint names the settings of that one.
export function explainConnectError(error: unknown, connectedAs: PlexerConfig, role: 'admin' | 'helper'): PlexerError | null {
  const e = error as PgError;
  const target = describeTarget(connectedAs);
  if (AUTH_CODES.has(e.code ?? '') || NO_PASSWORD.test(e.message)) {
    const keys =
      role === 'admin'
        ? 'admin_pg_passfile (a root-only .pgpass) or peer authentication for admin_pg_user (pg_ident.conf: root → that role)'
        : `pg_password or pg_passfile (or peer authentication for pg_user: pg_host = the socket directory, pg_ident.conf: ${APACHE_RUN_USER} → that role)`;
    const missing = /must be a string|no password supplied/i.test(e.message) ? 'no password is configured' : e.message;
    return new ConfigError(`PostgreSQL at ${target} refused the login (${missing}): set ${keys} in the config file`);
  }
  if (e.code === '3D000') {
    return new ConfigError(`${e.message} at ${target}: create it (CREATE DATABASE … OWNER …) or set pg_database / database_url`);
  }
  // No code: node-postgres's own (a timeout, a closed connection); a syscall: the socket (ENOENT, ECONNREFUSED);
  // 08xxx connection_exception, 57P0x the server shutting down.
  if (e.code === undefined || 'syscall' in e || /^(08|57P0)/.test(e.code)) {
    return new StoreUnavailableError(
      `cannot reach PostgreSQL at ${target}: ${e.message} (is it running? check pg_host/pg_port or database_url)`,
    );
  }
  return null;
}

// 42P01 undefined_table, 3F000 invalid_schema_name, 42883 undefined_function: plexer's schema is missing or older
// than this plexer.
export function explainSchemaError(error: unknown, config: PlexerConfig): PlexerError | null {
  const code = (error as PgError).code;
  if (code !== '42P01' && code !== '3F000' && code !== '42883') return null;
  return new ConfigError(
    `${coerceError(error).message}: plexer's schema "${config.schema}" is missing or out of date ` +
      `in this database; run \`plexer db migrate\``,
  );
}
