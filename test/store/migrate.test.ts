// `plexer db migrate` and what the schema guarantees on its own: idempotence, concurrent migrations, a custom
// schema, change notifications from triggers, foreign keys and CHECK constraints.
import pg from 'pg';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { readMigrations } from '../../src/store/migrate.js';
import { freshDatabase } from '../helpers/database.js';
import { freshStore, runPlexer, writeConfig, type TestStore } from '../helpers/plexer.js';

const HASH = '$2b$04$d1zKlBqgH3WPlpi6R00EK./eQ5KVv/iKwy/jCb7F38jm4Vw85UHNu'; // bcrypt('secret', 4)
const MIGRATIONS = readMigrations().map((m) => ({ id: m.id, name: m.name }));

// Listens on a channel; `collect` runs an action and returns exactly the payloads it caused, using a sentinel
// NOTIFY sent afterwards (notifications arrive in commit order) instead of a guessed wait.
class Listener {
  private payloads: string[] = [];
  private sentinelSeen: (() => void) | null = null;
  private counter = 0;

  private constructor(
    readonly client: pg.Client,
    readonly channel: string,
  ) {}

  static async open(url: string, channel: string): Promise<Listener> {
    const client = new pg.Client({ connectionString: url });
    await client.connect();
    const listener = new Listener(client, channel);
    client.on('notification', (n) => {
      if (n.channel !== channel) return;
      if (n.payload?.startsWith('sentinel-')) listener.sentinelSeen?.();
      else listener.payloads.push(n.payload ?? '');
    });
    await client.query(`LISTEN "${channel}"`);
    return listener;
  }

  async collect(action: () => Promise<unknown>): Promise<string[]> {
    // Whatever earlier statements announced arrives before the first sentinel and is dropped.
    await this.sync();
    this.payloads = [];
    await action();
    await this.sync();
    return this.payloads;
  }

  private async sync(): Promise<void> {
    const seen = new Promise<void>((resolve, reject) => {
      const timer = setTimeout(() => reject(new Error('sentinel notification not received')), 5_000);
      this.sentinelSeen = () => {
        clearTimeout(timer);
        resolve();
      };
    });
    await this.client.query('SELECT pg_notify($1, $2)', [this.channel, `sentinel-${++this.counter}`]);
    await seen;
  }

  close(): Promise<void> {
    return this.client.end();
  }
}

describe('plexer db migrate', () => {
  let store: TestStore;
  beforeAll(async () => {
    store = await freshStore();
  });
  afterAll(() => store?.close());

  it('records every migration once, and a second run applies nothing and changes nothing', async () => {
    const before = await store.sql.query('SELECT id, name, applied_at FROM migrations ORDER BY id');
    expect(before.rows.map((r) => ({ id: r.id, name: r.name }))).toEqual(MIGRATIONS);
    expect(MIGRATIONS[0]).toEqual({ id: 1, name: 'schema' });

    const again = await runPlexer(['db', 'migrate'], { configPath: store.configPath });
    expect(again.code).toBe(0);
    expect(again.stderr).toMatch(/db info: schema up to date schema=plexer/);
    expect(again.stderr).not.toMatch(/migration applied/);
    expect(again.stdout).toBe('');

    const after = await store.sql.query('SELECT id, name, applied_at FROM migrations ORDER BY id');
    expect(after.rows).toEqual(before.rows);
  });

  it('creates the tables in the plexer schema', async () => {
    const tables = await store.sql.query(
      `SELECT table_name FROM information_schema.tables WHERE table_schema = 'plexer' ORDER BY table_name`,
    );
    expect(tables.rows.map((r) => r.table_name)).toEqual(expect.arrayContaining(['daemon_groups', 'migrations', 'user_roles', 'users']));
    const elsewhere = await store.sql.query(
      `SELECT table_schema FROM information_schema.tables WHERE table_name = 'users' AND table_schema <> 'plexer'`,
    );
    expect(elsewhere.rows).toEqual([]);
  });
});

describe('concurrent migrations', () => {
  it('two migrations started at once on a fresh database both succeed and apply each step once', async () => {
    const db = await freshDatabase();
    try {
      const configPath = writeConfig(db.url);
      const [a, b] = await Promise.all([runPlexer(['db', 'migrate'], { configPath }), runPlexer(['db', 'migrate'], { configPath })]);
      expect([a.code, b.code], `stderr:\n${a.stderr}\n${b.stderr}`).toEqual([0, 0]);
      // Exactly one of them applied the migrations.
      const appliedBy = [a, b].filter((r) => /migration applied/.test(r.stderr));
      const upToDate = [a, b].filter((r) => /schema up to date/.test(r.stderr));
      expect(appliedBy).toHaveLength(1);
      expect(upToDate).toHaveLength(1);

      const client = new pg.Client({ connectionString: db.url });
      await client.connect();
      try {
        const rows = await client.query('SELECT id, name FROM plexer.migrations ORDER BY id');
        expect(rows.rows).toEqual(MIGRATIONS);
        const schemas = await client.query(`SELECT count(*)::int AS n FROM pg_namespace WHERE nspname = 'plexer'`);
        expect(schemas.rows[0].n).toBe(1);
        const triggers = await client.query(
          `SELECT count(*)::int AS n FROM pg_trigger t JOIN pg_class c ON c.oid = t.tgrelid
            WHERE c.relname = 'users' AND t.tgname = 'users_notify'`,
        );
        expect(triggers.rows[0].n).toBe(1);
      } finally {
        await client.end();
      }
    } finally {
      await db.drop();
    }
  });
});

describe('a custom schema', () => {
  let store: TestStore;
  beforeAll(async () => {
    store = await freshStore({ schema: 'other' });
  });
  afterAll(() => store?.close());

  it('puts the tables in that schema and nothing in "plexer"', async () => {
    const tables = await store.sql.query(
      `SELECT table_schema, table_name FROM information_schema.tables
        WHERE table_schema IN ('plexer', 'other') ORDER BY table_schema, table_name`,
    );
    expect(tables.rows.filter((r) => r.table_schema === 'plexer')).toEqual([]);
    expect(tables.rows.map((r) => r.table_name)).toEqual(expect.arrayContaining(['daemon_groups', 'migrations', 'user_roles', 'users']));
    const migrations = await store.sql.query('SELECT id, name FROM other.migrations ORDER BY id');
    expect(migrations.rows).toEqual(MIGRATIONS);
  });

  it('notifies on "<schema>_changes", not on plexer_changes', async () => {
    const other = await Listener.open(store.db.url, 'other_changes');
    const plexer = await Listener.open(store.db.url, 'plexer_changes');
    try {
      const payloads = await other.collect(() =>
        store.sql.query('INSERT INTO other.users (name, password_hash) VALUES ($1, $2)', ['alice', HASH]),
      );
      expect(payloads).toEqual(['u:alice']);
      expect(await plexer.collect(async () => undefined)).toEqual([]);
    } finally {
      await other.close();
      await plexer.close();
    }
  });

  it('a second migrate of the custom schema applies nothing', async () => {
    const again = await runPlexer(['db', 'migrate'], { configPath: store.configPath });
    expect(again.code).toBe(0);
    expect(again.stderr).toMatch(/schema up to date schema=other/);
  });
});

describe('schema guarantees', () => {
  let store: TestStore;
  let listener: Listener;

  beforeAll(async () => {
    store = await freshStore();
    listener = await Listener.open(store.db.url, 'plexer_changes');
  });
  afterAll(async () => {
    await listener?.close();
    await store?.close();
  });

  const q = (text: string, params: unknown[] = []) => store.sql.query(text, params);
  const sorted = (values: string[]) => [...values].sort();

  it('user insert, update, rename and delete notify the old and new names', async () => {
    expect(await listener.collect(() => q("INSERT INTO daemon_groups (name) VALUES ('t1'), ('t2')"))).toEqual(['g:t1', 'g:t2']);
    expect(await listener.collect(() => q("INSERT INTO users (name, password_hash) VALUES ('bob', $1)", [HASH]))).toEqual(['u:bob']);
    // An update notifies old and new row; the same payload twice in one transaction is delivered once.
    expect(await listener.collect(() => q("UPDATE users SET daemon_group = 't1' WHERE name = 'bob'"))).toEqual(['u:bob']);
    expect(await listener.collect(() => q("UPDATE users SET name = 'robert' WHERE name = 'bob'"))).toEqual(['u:bob', 'u:robert']);
    expect(await listener.collect(() => q("DELETE FROM users WHERE name = 'robert'"))).toEqual(['u:robert']);
    // A statement that changes no row says nothing.
    expect(await listener.collect(() => q("UPDATE users SET disabled = true WHERE name = 'nobody'"))).toEqual([]);
  });

  it('roles notify "r:<user>", and a user rename cascades to the roles', async () => {
    await q("INSERT INTO users (name, password_hash) VALUES ('carol', $1)", [HASH]);
    expect(await listener.collect(() => q("INSERT INTO user_roles (user_name, role) VALUES ('carol', 'admin')"))).toEqual(['r:carol']);
    const payloads = await listener.collect(() => q("UPDATE users SET name = 'caroline' WHERE name = 'carol'"));
    expect(sorted(payloads)).toEqual(['r:carol', 'r:caroline', 'u:carol', 'u:caroline']);
    const roles = await q("SELECT user_name, role FROM user_roles WHERE user_name LIKE 'carol%'");
    expect(roles.rows).toEqual([{ user_name: 'caroline', role: 'admin' }]);
    // Deleting the user deletes its roles, and both are announced.
    expect(sorted(await listener.collect(() => q("DELETE FROM users WHERE name = 'caroline'")))).toEqual(['r:caroline', 'u:caroline']);
  });

  it('a group rename cascades to its users and notifies the group and every user in it', async () => {
    await q("INSERT INTO daemon_groups (name) VALUES ('old')");
    await q("INSERT INTO users (name, password_hash, daemon_group) VALUES ('u1', $1, 'old'), ('u2', $1, 'old'), ('u3', $1, 't2')", [HASH]);
    const payloads = await listener.collect(() => q("UPDATE daemon_groups SET name = 'new' WHERE name = 'old'"));
    expect(sorted(payloads)).toEqual(['g:new', 'g:old', 'u:u1', 'u:u2']);
    const users = await q("SELECT name, daemon_group FROM users WHERE name IN ('u1', 'u2', 'u3') ORDER BY name");
    expect(users.rows).toEqual([
      { name: 'u1', daemon_group: 'new' },
      { name: 'u2', daemon_group: 'new' },
      { name: 'u3', daemon_group: 't2' },
    ]);
  });

  it('updates touch updated_at', async () => {
    await q("INSERT INTO users (name, password_hash) VALUES ('tim', $1)", [HASH]);
    await q("UPDATE users SET updated_at = '2000-01-01' , created_at = '2000-01-01' WHERE name = 'tim'");
    const row = await q("SELECT created_at, updated_at FROM users WHERE name = 'tim'");
    expect(new Date(row.rows[0].created_at).getUTCFullYear()).toBe(2000);
    expect(new Date(row.rows[0].updated_at).getUTCFullYear()).toBeGreaterThan(2000);
  });

  it('deleting a group that still has users fails (foreign key), and nothing is announced', async () => {
    await q("INSERT INTO daemon_groups (name) VALUES ('busy')");
    await q("INSERT INTO users (name, password_hash, daemon_group) VALUES ('worker', $1, 'busy')", [HASH]);
    let error: { code?: string; constraint?: string } | undefined;
    const payloads = await listener.collect(() => q("DELETE FROM daemon_groups WHERE name = 'busy'").catch((e) => (error = e)));
    expect(error?.code).toBe('23503');
    expect(payloads).toEqual([]);
    expect((await q("SELECT count(*)::int AS n FROM daemon_groups WHERE name = 'busy'")).rows[0].n).toBe(1);
    // Once empty it can go.
    await q("DELETE FROM users WHERE name = 'worker'");
    expect(await listener.collect(() => q("DELETE FROM daemon_groups WHERE name = 'busy'"))).toEqual(['g:busy']);
  });

  it('a user cannot name a group that does not exist', async () => {
    await expect(q("INSERT INTO users (name, password_hash, daemon_group) VALUES ('ghost', $1, 'missing')", [HASH])).rejects.toMatchObject({
      code: '23503',
    });
  });

  it.each([
    'secret',
    '',
    '$apr1$abcdefgh$0123456789abcdefghijk',
    '$apr1$abcdefghi$0123456789abcdefghijkl',
    '{SHA}W6ph5Mm5Pz8GgiULbPgzG37mj9g',
    '{SSHA}W6ph5Mm5Pz8GgiULbPgzG37mj9g=',
    '$1$abcdefgh$0123456789abcdefghijkl',
    HASH.replace('$04$', '$03$'),
    HASH.slice(0, -1),
    HASH + '\n',
  ])('refuses password_hash %j (CHECK password_hash_format)', async (hash) => {
    await expect(q("INSERT INTO users (name, password_hash) VALUES ('hashcheck', $1)", [hash])).rejects.toMatchObject({
      code: '23514',
      constraint: 'password_hash_format',
    });
  });

  it.each([HASH, '$apr1$abcdefgh$0123456789abcdefghijkl', '{SHA}W6ph5Mm5Pz8GgiULbPgzG37mj9g='])(
    'accepts password_hash %j (bcrypt, or htpasswd MD5/SHA-1 until the first login rehashes it)',
    async (hash) => {
      await q("INSERT INTO users (name, password_hash) VALUES ('hashok', $1)", [hash]);
      await q("DELETE FROM users WHERE name = 'hashok'");
    },
  );

  it('refuses a non-positive capacity', async () => {
    await expect(q("INSERT INTO daemon_groups (name, capacity) VALUES ('cap', 0)")).rejects.toMatchObject({
      code: '23514',
      constraint: 'capacity_positive',
    });
  });

  it('TRUNCATE notifies "*"', async () => {
    await q("INSERT INTO users (name, password_hash) VALUES ('dave', $1)", [HASH]);
    await q("INSERT INTO user_roles (user_name, role) VALUES ('dave', 'admin')");
    expect(await listener.collect(() => q('TRUNCATE user_roles'))).toEqual(['*']);
    expect(await listener.collect(() => q('TRUNCATE users, user_roles'))).toEqual(['*']);
    expect(await listener.collect(() => q('TRUNCATE daemon_groups CASCADE'))).toEqual(['*']);
    expect((await q('SELECT count(*)::int AS n FROM users')).rows[0].n).toBe(0);
  });

  it('a rolled-back change notifies nothing', async () => {
    const client = await store.sql.connect();
    try {
      const payloads = await listener.collect(async () => {
        await client.query('BEGIN');
        await client.query("INSERT INTO users (name, password_hash) VALUES ('eve', $1)", [HASH]);
        await client.query('ROLLBACK');
      });
      expect(payloads).toEqual([]);
    } finally {
      client.release();
    }
  });
});
