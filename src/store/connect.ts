import pg from 'pg';
import type { PlexerConfig } from '../config.js';

export interface ConnectOptions {
  // A short connect timeout keeps a helper's deadline meaningful when the server is down or unreachable.
  connectTimeoutMs?: number;
  applicationName?: string;
  // Server-side cap on one statement: PostgreSQL cancels it and the connection stays usable. (A client-side
  // timeout would abandon the connection while its backend still waits on the lock, and connections would
  // pile up on the server.)
  statementTimeoutMs?: number;
}

// What psql (Debian's libpq) dials when no host is set: the local socket, not node-postgres's localhost:5432.
export const DEFAULT_PG_HOST = '/var/run/postgresql';

const hostOf = (c: PlexerConfig['connection']): string | undefined => c.host ?? (c.connectionString ? undefined : DEFAULT_PG_HOST);

export function clientConfig(config: PlexerConfig, options: ConnectOptions = {}): pg.ClientConfig {
  const c = config.connection;
  const host = hostOf(c);
  // pg reads a passfile only through the PGPASSFILE variable; the config file has no other way to reach it.
  if (c.passfile) process.env.PGPASSFILE = c.passfile;
  return {
    ...(c.connectionString ? { connectionString: c.connectionString } : {}),
    ...(host ? { host } : {}),
    ...(c.port ? { port: c.port } : {}),
    ...(c.database ? { database: c.database } : {}),
    ...(c.user ? { user: c.user } : {}),
    ...(c.password !== undefined ? { password: c.password } : {}),
    options: `-c search_path=${config.schema}${options.statementTimeoutMs ? ` -c statement_timeout=${options.statementTimeoutMs}` : ''}`,
    application_name: options.applicationName ?? 'plexer',
    connectionTimeoutMillis: options.connectTimeoutMs ?? 5_000,
    keepAlive: true,
  };
}

export function createPool(config: PlexerConfig, options: ConnectOptions & { max?: number } = {}): pg.Pool {
  return new pg.Pool({ ...clientConfig(config, options), max: options.max ?? config.poolMax, idleTimeoutMillis: 30_000 });
}

export function createClient(config: PlexerConfig, options: ConnectOptions = {}): pg.Client {
  return new pg.Client(clientConfig(config, options));
}

// The target, for messages: never the password.
export function describeTarget(config: PlexerConfig): string {
  const c = config.connection;
  if (c.connectionString) {
    try {
      const url = new URL(c.connectionString);
      url.password = '';
      return url.toString();
    } catch {
      return '(unparseable database_url)';
    }
  }
  return `host=${hostOf(c)} port=${c.port ?? 5432} database=${c.database ?? '(default)'} user=${c.user ?? '(default)'}`;
}
