// Each test file (or test) gets a fresh, real database on the shared test server.
import { randomBytes } from 'node:crypto';
import { inject } from 'vitest';
import { createDatabase, dropDatabase } from '../../src/demo/private-cluster.js';

export interface FreshDatabase {
  url: string;
  name: string;
  drop(): Promise<void>;
}

export async function freshDatabase(): Promise<FreshDatabase> {
  const server = { url: inject('pgUrl') };
  const name = `t_${randomBytes(6).toString('hex')}`;
  const url = await createDatabase(server, name);
  return { url, name, drop: () => dropDatabase(server, name) };
}

export interface PgSettings {
  /** Host name, or the unix socket directory when it starts with '/'. */
  host: string;
  port: number;
  user: string;
  database: string;
  password?: string;
}

/**
 * Splits a postgres:// URL into the separate settings a config file takes. Accepts the libpq forms
 * used here: `postgresql://user:pw@host:port/db` and `postgresql://user@/db?host=/sockdir&port=N`.
 */
export function parsePgUrl(url: string): PgSettings {
  // WHATWG URL rejects credentials with an empty host, which the unix-socket form has.
  const parsed = new URL(url.replace(/^(postgres(?:ql)?:\/\/(?:[^/?#@]*@)?)(?=[/?#]|$)/, '$1placeholder.invalid'));
  if (parsed.protocol !== 'postgresql:' && parsed.protocol !== 'postgres:') {
    throw new Error(`not a postgres:// URL: ${url}`);
  }
  const hostFromAuthority = parsed.hostname === 'placeholder.invalid' ? '' : decodeURIComponent(parsed.hostname);
  const host = parsed.searchParams.get('host') ?? (hostFromAuthority || 'localhost');
  const port = Number(parsed.searchParams.get('port') ?? (parsed.port || 5432));
  const user = parsed.searchParams.get('user') ?? (decodeURIComponent(parsed.username) || 'postgres');
  const database = decodeURIComponent(parsed.pathname.replace(/^\//, '')) || user;
  const password = parsed.searchParams.get('password') ?? decodeURIComponent(parsed.password);
  return { host, port, user, database, ...(password ? { password } : {}) };
}
