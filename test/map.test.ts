import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { MapProcess, freshStore, runPlexer, waitForAnswer, type TestStore } from './helpers/plexer.js';

let store: TestStore;
const HASH = '$2b$04$d1zKlBqgH3WPlpi6R00EK./eQ5KVv/iKwy/jCb7F38jm4Vw85UHNu'; // bcrypt('secret', 4)

beforeAll(async () => {
  store = await freshStore();
  await store.sql.query(`INSERT INTO daemon_groups (name, settings_module, backend) VALUES
    ('tenant1', 'tenants.settings.tenant1', 'http://127.0.0.1:8001/'), ('tenant2', 'tenants.settings.tenant2', NULL),
    ('closed', 'tenants.settings.closed', NULL)`);
  await store.sql.query(`UPDATE daemon_groups SET enabled = false WHERE name = 'closed'`);
  await store.sql.query(`INSERT INTO users (name, password_hash, daemon_group, disabled) VALUES
    ('alice', $1, 'tenant1', false), ('bob', $1, 'tenant2', false), ('mallory', $1, 'tenant1', true),
    ('nogroup', $1, NULL, false), ('carl', $1, 'closed', false)`, [HASH]);
});

afterAll(() => store.close());

describe('plexer map group', () => {
  it('answers hits, misses, disabled users and users without a usable group', async () => {
    const map = new MapProcess('group', store.configPath);
    expect(await map.askMany(['alice', 'bob', 'nobody', 'mallory', 'nogroup', 'carl', 'alice']))
      .toEqual(['tenant1', 'tenant2', 'NULL', 'NULL', 'NULL', 'NULL', 'tenant1']);
    expect(await map.close()).toBe(0);
  });

  it('answers NULL to invalid keys without losing its place', async () => {
    const map = new MapProcess('group', store.configPath);
    const keys = ['', 'al\tice', 'a'.repeat(129), 'ali ce', '-alice', 'alice\r', 'alice'];
    expect(await map.askMany(keys)).toEqual(['NULL', 'NULL', 'NULL', 'NULL', 'NULL', 'NULL', 'tenant1']);
    map.write(Buffer.from([0x61, 0x6c, 0xff, 0xfe, 0x0a, 0x00, 0x0a]));
    expect([await map.nextLine(), await map.nextLine()]).toEqual(['NULL', 'NULL']);
    map.write('x'.repeat(3 * 1024 * 1024) + '\nbob\n');
    expect([await map.nextLine(), await map.nextLine()]).toEqual(['NULL', 'tenant2']);
    await map.close();
  });

  it('answers many keys written in one chunk, in order', async () => {
    const map = new MapProcess('group', store.configPath);
    const keys = Array.from({ length: 2000 }, (_, i) => (i % 3 === 0 ? 'alice' : i % 3 === 1 ? 'bob' : `ghost${i}`));
    const answers = await map.askMany(keys);
    expect(answers).toEqual(keys.map((k) => (k === 'alice' ? 'tenant1' : k === 'bob' ? 'tenant2' : 'NULL')));
    await map.close();
  });

  it('sees a change made with plain SQL within a second, without restarting', async () => {
    const map = new MapProcess('group', store.configPath);
    expect(await map.ask('bob')).toBe('tenant2');
    expect(await map.ask('dave')).toBe('NULL');
    await new Promise((r) => setTimeout(r, 300)); // let the listener connect
    await store.sql.query(`UPDATE users SET daemon_group = 'tenant1' WHERE name = 'bob'`);
    expect(await waitForAnswer(map, 'bob', 'tenant1')).toBeLessThan(1_000);
    await store.sql.query(`INSERT INTO users (name, password_hash, daemon_group) VALUES ('dave', $1, 'tenant2')`, [HASH]);
    expect(await waitForAnswer(map, 'dave', 'tenant2')).toBeLessThan(1_000);
    await store.sql.query(`UPDATE daemon_groups SET enabled = false WHERE name = 'tenant2'`);
    expect(await waitForAnswer(map, 'dave', 'NULL')).toBeLessThan(1_000);
    await store.sql.query(`UPDATE daemon_groups SET enabled = true WHERE name = 'tenant2'`);
    await store.sql.query(`DELETE FROM users WHERE name = 'dave'`);
    expect(await waitForAnswer(map, 'dave', 'NULL')).toBeLessThan(1_000);
    await store.sql.query(`UPDATE users SET daemon_group = 'tenant2' WHERE name = 'bob'`);
    await waitForAnswer(map, 'bob', 'tenant2');
    await map.close();
  });

  it('exits 0 on EOF, even with the last line unterminated, after answering it', async () => {
    const map = new MapProcess('group', store.configPath);
    map.write('alice\nbob');
    const code = map.close();
    expect([await map.nextLine(), await map.nextLine()]).toEqual(['tenant1', 'tenant2']);
    expect(await code).toBe(0);
    expect(map.stderr).not.toMatch(/error/i);
  });
});

describe('plexer map settings and backend', () => {
  it('maps a group to its settings module', async () => {
    const map = new MapProcess('settings', store.configPath);
    expect(await map.askMany(['tenant1', 'tenant2', 'closed', 'nosuch', 'Tenant1', 'alice']))
      .toEqual(['tenants.settings.tenant1', 'tenants.settings.tenant2', 'NULL', 'NULL', 'NULL', 'NULL']);
    await store.sql.query(`UPDATE daemon_groups SET settings_module = 'tenants.settings.other' WHERE name = 'tenant1'`);
    await waitForAnswer(map, 'tenant1', 'tenants.settings.other');
    await store.sql.query(`UPDATE daemon_groups SET settings_module = 'tenants.settings.tenant1' WHERE name = 'tenant1'`);
    await map.close();
  });

  it('maps a user to the backend of their group, NULL where the group has none', async () => {
    const map = new MapProcess('backend', store.configPath);
    expect(await map.askMany(['alice', 'bob', 'mallory'])).toEqual(['http://127.0.0.1:8001/', 'NULL', 'NULL']);
    await map.close();
  });
});

describe('a map that cannot start properly', () => {
  it('answers NULL to every line when its config is broken, and still exits on EOF', async () => {
    const { writeFileSync, mkdtempSync } = await import('node:fs');
    const dir = mkdtempSync('/tmp/plexer-bad-');
    writeFileSync(`${dir}/plexer.conf`, 'pg_port = not-a-number\n');
    const map = new MapProcess('group', `${dir}/plexer.conf`);
    expect(await map.askMany(['alice', 'bob'])).toEqual(['NULL', 'NULL']);
    expect(await map.close()).toBe(2);
    expect(map.stderr).toMatch(/configuration error.*pg_port/);
  });

  it('rejects an unknown map kind with a usage error', async () => {
    const result = await runPlexer(['map', 'nonsense'], {});
    expect(result.code).toBe(2);
    expect(result.stderr).toMatch(/map group, map settings, map backend/);
  });
});

describe('a map whose reader of stderr is gone', () => {
  it('keeps answering and still exits on EOF, without spinning on failed log writes', async () => {
    const map = new MapProcess('group', store.configPath);
    map.child.stderr.destroy();
    expect(await map.askMany(['alice', 'bad key', 'bob'])).toEqual(['tenant1', 'NULL', 'tenant2']);
    const started = Date.now();
    expect(await map.close()).toBe(0);
    expect(Date.now() - started).toBeLessThan(3_000);
  });
});
