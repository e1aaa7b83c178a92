import type pg from 'pg';
import { adminConfig, loadConfig, type PlexerConfig } from '../config.js';
import { coerceError, PermissionDeniedError, StoreUnavailableError } from '../errors.js';
import { setLogLevel } from '../log.js';
import { createClient, createPool, describeTarget } from '../store/connect.js';
import { explainConnectError, explainSchemaError } from '../store/connect-errors.js';

export function loadCommandConfig(path: string | undefined): PlexerConfig {
  const config = loadConfig({ path });
  setLogLevel(config.logLevel);
  return config;
}

// Admin commands open one small pool for their run and always close it, so the process exits promptly. They
// connect as the admin identity (admin_pg_user), never as the helpers' read-only role.
export async function withStore<T>(config: PlexerConfig, work: (pool: pg.Pool) => Promise<T>): Promise<T> {
  const admin = adminConfig(config);
  await probe(config, admin);
  const pool = createPool(admin, { max: 2, applicationName: 'plexer-cli' });
  pool.on('error', () => undefined);
  try {
    return await work(pool).catch((error: unknown) => {
      const schema = explainSchemaError(error, config);
      if (schema) throw schema;
      if ((error as { code?: string }).code !== '42501') throw error;
      throw new PermissionDeniedError(
        `${coerceError(error).message} (connected as ${describeTarget(admin)}): admin commands need the ` +
          "role that owns plexer's schema; set admin_pg_user (and admin_pg_passfile, or peer authentication) in the config " +
          "— pg_user is the helpers' read-only role",
      );
    });
  } finally {
    await pool.end();
  }
}

// A lone client, not the pool: a login the server refuses half-way (a scram exchange without a password) leaves
// the pool's socket open and the command would never exit; Client.end() closes it.
async function probe(config: PlexerConfig, admin: PlexerConfig): Promise<void> {
  const client = createClient(admin, { applicationName: 'plexer-cli' });
  client.on('error', () => undefined);
  try {
    await client.connect();
    await client.query('SELECT 1');
  } catch (error) {
    throw (
      explainConnectError(error, admin, config.admin.user !== undefined ? 'admin' : 'helper') ??
      new StoreUnavailableError(`cannot reach PostgreSQL at ${describeTarget(admin)}: ${coerceError(error).message}`)
    );
  } finally {
    await client.end().catch(() => undefined);
  }
}

export async function inTransaction<T>(pool: pg.Pool, work: (client: pg.PoolClient) => Promise<T>): Promise<T> {
  const client = await pool.connect();
  try {
    await client.query('BEGIN');
    const result = await work(client);
    await client.query('COMMIT');
    return result;
  } catch (error) {
    await client.query('ROLLBACK').catch(() => undefined);
    throw error;
  } finally {
    client.release();
  }
}
