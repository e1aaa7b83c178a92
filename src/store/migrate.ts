import { readdirSync, readFileSync } from 'node:fs';
import type pg from 'pg';
import { quoteIdentifier } from './sql.js';

// Resolved from the package root so the same path works from src/ (tests) and dist/ (installed).
const MIGRATIONS_DIR = new URL('../../src/store/migrations/', import.meta.url);

export interface Migration {
  id: number;
  name: string;
  sql: string;
}

export function readMigrations(): Migration[] {
  return readdirSync(MIGRATIONS_DIR)
    .filter((file) => /^\d{3}_[a-z0-9_]+\.sql$/.test(file))
    .sort()
    .map((file) => ({
      id: Number(file.slice(0, 3)),
      name: file.slice(4, -4),
      sql: readFileSync(new URL(file, MIGRATIONS_DIR), 'utf8'),
    }));
}

// One transaction under an advisory lock: two front ends migrating at once apply each step exactly once, and
// a failed step leaves the schema as it was.
export async function migrate(client: pg.ClientBase, schema: string): Promise<Migration[]> {
  const schemaId = quoteIdentifier(schema);
  const applied: Migration[] = [];
  await client.query('BEGIN');
  try {
    await client.query('SELECT pg_advisory_xact_lock(hashtext($1))', [`plexer.migrate:${schema}`]);
    await client.query(`CREATE SCHEMA IF NOT EXISTS ${schemaId}`);
    await client.query(`SET LOCAL search_path TO ${schemaId}`);
    await client.query(
      `CREATE TABLE IF NOT EXISTS migrations (
         id integer PRIMARY KEY, name text NOT NULL, applied_at timestamptz NOT NULL DEFAULT now())`,
    );
    const done = await client.query<{ id: number }>('SELECT id FROM migrations');
    const doneIds = new Set(done.rows.map((row) => row.id));
    for (const migration of readMigrations()) {
      if (doneIds.has(migration.id)) continue;
      await client.query(migration.sql);
      await client.query('INSERT INTO migrations (id, name) VALUES ($1, $2)', [migration.id, migration.name]);
      applied.push(migration);
    }
    await client.query('COMMIT');
    return applied;
  } catch (error) {
    await client.query('ROLLBACK').catch(() => undefined);
    throw error;
  }
}
