import type pg from 'pg';
import { loadConfig, type PlexerConfig } from '../config.js';
import { StoreUnavailableError } from '../errors.js';
import { setLogLevel } from '../log.js';
import { createPool, describeTarget } from '../store/connect.js';

export function loadCommandConfig(path: string | undefined): PlexerConfig {
  const config = loadConfig({ path });
  setLogLevel(config.logLevel);
  return config;
}

// Admin commands open one small pool for their run and always close it, so the process exits promptly.
export async function withStore<T>(config: PlexerConfig, work: (pool: pg.Pool) => Promise<T>): Promise<T> {
  const pool = createPool(config, { max: 2, applicationName: 'plexer-cli' });
  pool.on('error', () => undefined);
  try {
    await pool.query('SELECT 1').catch((error: Error) => {
      throw new StoreUnavailableError(`cannot reach PostgreSQL at ${describeTarget(config)}: ${error.message}`);
    });
    return await work(pool);
  } finally {
    await pool.end();
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
