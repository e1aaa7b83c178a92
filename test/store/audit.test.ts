// The audit table (migration 006): every change to users, groups and roles, made by the CLI or by psql, is
// recorded by triggers with the database user and the client's application_name, never a password hash.
import { execFileSync } from 'node:child_process';
import pg from 'pg';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { freshStore, runPlexer, type TestStore } from '../helpers/plexer.js';
import { parsePgUrl } from '../helpers/database.js';

let store: TestStore;

beforeAll(async () => {
  store = await freshStore();
}, 60_000);

afterAll(async () => {
  await store?.close();
});

async function cli(args: string[], input = 'pw\n') {
  const r = await runPlexer(args, { configPath: store.configPath, input });
  if (r.code !== 0) throw new Error(`plexer ${args.join(' ')}: ${r.stderr}`);
}

interface AuditRow {
  db_user: string;
  application_name: string;
  table_name: string;
  operation: string;
  subject: string | null;
  old_row: any;
  new_row: any;
}

async function auditSince(id: number): Promise<AuditRow[]> {
  return (await store.sql.query<AuditRow>('SELECT * FROM audit WHERE id > $1 ORDER BY id', [id])).rows;
}

async function lastId(): Promise<number> {
  return Number((await store.sql.query('SELECT coalesce(max(id), 0) AS id FROM audit')).rows[0].id);
}

describe('audit of account changes', () => {
  it('records the CLI\'s changes with the database user and application_name "plexer-cli"', async () => {
    const admin = parsePgUrl(store.db.url).user;
    const start = await lastId();
    await cli(['group', 'add', 'audit1']);
    await cli(['user', 'add', 'erin', '--group', 'audit1', '--password-stdin'], 'erin-pw\n');
    await cli(['user', 'grant', 'erin', 'staff']);
    await cli(['user', 'passwd', 'erin', '--password-stdin'], 'erin-new-pw\n');
    await cli(['user', 'disable', 'erin']);
    await cli(['user', 'del', 'erin']);
    const rows = await auditSince(start);
    expect(rows.map((r) => [r.table_name, r.operation, r.subject])).toEqual([
      ['daemon_groups', 'INSERT', 'audit1'],
      ['users', 'INSERT', 'erin'],
      ['user_roles', 'INSERT', 'erin'],
      ['users', 'UPDATE', 'erin'],
      ['users', 'UPDATE', 'erin'],
      // Deleting a user cascades to the roles: both are recorded.
      ...rows.slice(5).map((r) => [r.table_name, r.operation, r.subject]),
    ]);
    expect(
      rows
        .slice(5)
        .map((r) => `${r.table_name} ${r.operation}`)
        .sort(),
    ).toEqual(['user_roles DELETE', 'users DELETE']);
    for (const r of rows) {
      expect(r.db_user).toBe(admin);
      expect(r.application_name).toBe('plexer-cli');
      expect(JSON.stringify([r.old_row, r.new_row])).not.toContain('$2');
    }
    expect(rows[3]!.new_row.password_changed).toBe(true);
    expect([rows[4]!.old_row.disabled, rows[4]!.new_row.disabled, rows[4]!.new_row.password_changed]).toEqual([false, true, false]);
  });

  it('records changes made with psql, as whoever psql connected as', async () => {
    const s = parsePgUrl(store.db.url);
    const start = await lastId();
    const psql = (sql: string) =>
      execFileSync(
        'psql',
        ['-X', '-q', '-v', 'ON_ERROR_STOP=1', '-h', s.host, '-p', String(s.port), '-U', s.user, '-d', s.database, '-c', sql],
        { env: { ...process.env, PGPASSWORD: s.password ?? '' }, encoding: 'utf8' },
      );
    psql("UPDATE plexer.daemon_groups SET enabled = false WHERE name = 'audit1'");
    psql("DELETE FROM plexer.daemon_groups WHERE name = 'audit1'");
    const rows = await auditSince(start);
    expect(rows.map((r) => [r.table_name, r.operation, r.subject, r.db_user, r.application_name])).toEqual([
      ['daemon_groups', 'UPDATE', 'audit1', s.user, 'psql'],
      ['daemon_groups', 'DELETE', 'audit1', s.user, 'psql'],
    ]);
    expect([rows[0]!.old_row.enabled, rows[0]!.new_row.enabled]).toEqual([true, false]);
  });

  it("is out of reach of the helpers' role", async () => {
    const s = parsePgUrl(store.db.url);
    const client = new pg.Client({ host: s.host, port: s.port, database: s.database, user: store.helperRole });
    await client.connect();
    try {
      await expect(client.query('SELECT * FROM plexer.audit')).rejects.toThrow(/permission denied/);
      await expect(client.query('SELECT * FROM plexer.sessions')).rejects.toThrow(/permission denied/);
    } finally {
      await client.end();
    }
  });
});
