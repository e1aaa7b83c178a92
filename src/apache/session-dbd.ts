import type { ConnectionSettings, PlexerConfig } from '../config.js';
import { ConfigError } from '../errors.js';

// Where mod_session_dbd keeps form-login sessions: plexer's PostgreSQL, reached by Apache's children through
// mod_dbd as the helpers' role, which may only call the session functions of migration 006.
export interface SessionDatabase {
  conninfo: string; // a libpq connection string (keyword=value pairs or a postgresql:// URL)
  schema: string;
}

// DBDParams is one quoted Apache argument and Apache expands ${VAR} in it; a value that would need quoting
// there or in libpq's syntax is refused rather than escaped twice.
const PLAIN_VALUE = /^[A-Za-z0-9._~+\/=:@%,-]{1,1000}$/;

export function sessionDatabaseFrom(config: PlexerConfig): SessionDatabase {
  const c: ConnectionSettings = config.connection;
  const plain = (label: string, value: string): string => {
    if (!PLAIN_VALUE.test(value)) {
      throw new ConfigError(
        `${label} holds characters Apache's DBDParams cannot carry (quotes, spaces, $, \\): ` +
          (label.includes('password') ? 'put the password in a pg_passfile instead' : 'use plain characters'),
      );
    }
    return value;
  };
  if (c.connectionString !== undefined) {
    return { conninfo: plain('database_url', c.connectionString), schema: config.schema };
  }
  const pairs: [string, string | number | undefined][] = [
    ['host', c.host],
    ['port', c.port],
    ['dbname', c.database],
    ['user', c.user],
    ['password', c.password],
    ['passfile', c.passfile],
  ];
  const conninfo = pairs
    .filter((pair): pair is [string, string | number] => pair[1] !== undefined)
    .map(([key, value]) => `${key}=${plain(`pg_${key === 'dbname' ? 'database' : key}`, String(value))}`)
    .concat('application_name=plexer-sessions')
    .join(' ');
  return { conninfo, schema: config.schema };
}
