// The helpers' PostgreSQL role (issue 9, item 4): it reads what the helpers answer from and writes only through
// the three SECURITY DEFINER functions of migration 003; `plexer db grant` makes it so, idempotently; and the
// real helpers work as that role.
import bcrypt from 'bcryptjs';
import { spawnSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import pg from 'pg';
import { afterAll, beforeAll, describe, expect, inject, it } from 'vitest';
import { startPrivateCluster, withDatabase } from '../../src/demo/private-cluster.js';
import { parsePgUrl } from '../helpers/database.js';
import { freshStore, MapProcess, runPlexer, writeConfig, type TestStore } from '../helpers/plexer.js';

let store: TestStore;
let helper: pg.Client;
const cli = (args: string[], configPath = store.configPath, input = 'pw-alice\n') => runPlexer(args, { configPath, input });
const authnEnv = (ip: string) => ({ PATH: '/usr/bin:/bin', AUTHTYPE: 'PASS', IP: ip });

// The privileges the role holds in the database, as a comparable list.
async function privileges(role: string): Promise<string[]> {
  const { rows } = await store.sql.query<{ p: string }>(
    `SELECT c.relname || ':' || a.privilege_type AS p
       FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace, aclexplode(c.relacl) a
      WHERE n.nspname = 'plexer' AND a.grantee = (SELECT oid FROM pg_roles WHERE rolname = $1)
     UNION ALL
     SELECT p.proname || ':' || a.privilege_type
       FROM pg_proc p JOIN pg_namespace n ON n.oid = p.pronamespace, aclexplode(p.proacl) a
      WHERE n.nspname = 'plexer' AND a.grantee = (SELECT oid FROM pg_roles WHERE rolname = $1)
     UNION ALL
     SELECT 'schema:' || a.privilege_type FROM pg_namespace n, aclexplode(n.nspacl) a
      WHERE n.nspname = 'plexer' AND a.grantee = (SELECT oid FROM pg_roles WHERE rolname = $1)
     ORDER BY 1`,
    [role],
  );
  return rows.map((row) => row.p);
}

beforeAll(async () => {
  store = await freshStore({ lockout_max_failures: 3 });
  expect((await cli(['group', 'add', 'tenant1'])).code).toBe(0);
  expect((await cli(['user', 'add', 'alice', '--group', 'tenant1', '--password-stdin'])).code).toBe(0);
  expect((await cli(['user', 'grant', 'alice', 'staff'])).code).toBe(0);
  const s = parsePgUrl(store.db.url);
  helper = new pg.Client({ host: s.host, port: s.port, database: s.database, user: store.helperRole, options: '-c search_path=plexer' });
  await helper.connect();
});

afterAll(async () => {
  await helper?.end();
  await store?.close();
});

async function expectDenied(sql: string, values: unknown[] = []): Promise<void> {
  const error = await helper.query(sql, values).then(
    () => null,
    (e: Error & { code?: string }) => e,
  );
  expect(error, sql).not.toBeNull();
  expect(error!.code, `${sql}: ${error!.message}`).toBe('42501');
}

describe("the helpers' role", () => {
  it("is what the helpers' config names; the admin commands use another role", () => {
    const text = readFileSync(store.configPath, 'utf8');
    expect(text).toMatch(new RegExp(`^pg_user = ${store.helperRole}$`, 'm'));
    expect(text).toMatch(/^admin_pg_user = \S+$/m);
  });

  it('is no superuser, has no other power, and owns nothing', async () => {
    const { rows } = await store.sql.query(
      `SELECT rolsuper, rolcreatedb, rolcreaterole, rolreplication, rolbypassrls, rolinherit IS NOT NULL AS known
         FROM pg_roles WHERE rolname = $1`,
      [store.helperRole],
    );
    expect(rows).toEqual([
      { rolsuper: false, rolcreatedb: false, rolcreaterole: false, rolreplication: false, rolbypassrls: false, known: true },
    ]);
    const owned = await store.sql.query(
      `SELECT 1 FROM pg_class WHERE relowner = (SELECT oid FROM pg_roles WHERE rolname = $1)
       UNION ALL SELECT 1 FROM pg_proc WHERE proowner = (SELECT oid FROM pg_roles WHERE rolname = $1)
       UNION ALL SELECT 1 FROM pg_namespace WHERE nspowner = (SELECT oid FROM pg_roles WHERE rolname = $1)
       UNION ALL SELECT 1 FROM pg_database WHERE datdba = (SELECT oid FROM pg_roles WHERE rolname = $1)`,
      [store.helperRole],
    );
    expect(owned.rowCount).toBe(0);
    expect((await helper.query('SELECT current_user AS u')).rows[0].u).toBe(store.helperRole);
  });

  it('reads what the helpers answer from', async () => {
    expect((await helper.query(`SELECT password_hash, disabled FROM users WHERE name = 'alice'`)).rowCount).toBe(1);
    expect((await helper.query('SELECT name, settings_module, backend, enabled FROM daemon_groups')).rowCount).toBe(1);
    expect((await helper.query('SELECT role FROM user_roles')).rows).toEqual([{ role: 'staff' }]);
    expect((await helper.query('SELECT * FROM login_failures')).rowCount).toBe(0);
  });

  it('cannot INSERT, UPDATE, DELETE or TRUNCATE any table, nor read the migrations or create anything', async () => {
    const hash = bcrypt.hashSync('x', 4);
    await expectDenied(`UPDATE users SET password_hash = $1 WHERE name = 'alice'`, [hash]);
    await expectDenied(`UPDATE users SET daemon_group = NULL`);
    await expectDenied(`INSERT INTO users (name, password_hash) VALUES ('mallory', $1)`, [hash]);
    await expectDenied(`DELETE FROM users`);
    await expectDenied(`UPDATE daemon_groups SET enabled = false`);
    await expectDenied(`INSERT INTO daemon_groups (name) VALUES ('evil')`);
    await expectDenied(`DELETE FROM daemon_groups`);
    await expectDenied(`INSERT INTO user_roles VALUES ('alice', 'admins')`);
    await expectDenied(`UPDATE user_roles SET role = 'admins'`);
    await expectDenied(`DELETE FROM user_roles`);
    await expectDenied(`INSERT INTO login_failures (subject, failures) VALUES ('user:alice', 1)`);
    await expectDenied(`UPDATE login_failures SET locked_until = NULL`);
    await expectDenied(`DELETE FROM login_failures`);
    for (const table of ['users', 'daemon_groups', 'user_roles', 'login_failures']) await expectDenied(`TRUNCATE ${table}`);
    await expectDenied('SELECT * FROM migrations');
    await expectDenied('CREATE TABLE plexer.mine (x int)');
    await expectDenied('CREATE FUNCTION plexer.mine() RETURNS int LANGUAGE sql AS $$ SELECT 1 $$');
  });

  it('records, locks and clears login failures through the functions', async () => {
    const record = () => helper.query('SELECT * FROM record_login_failure($1, 600, 2, 60)', [['user:zed', 'ip:10.5.5.5']]);
    expect((await record()).rows).toEqual([
      { subject: 'user:zed', failures: 1, locked_now: false },
      { subject: 'ip:10.5.5.5', failures: 1, locked_now: false },
    ]);
    expect((await record()).rows.map((row) => row.locked_now)).toEqual([true, true]);
    const { rows } = await store.sql.query(`SELECT count(*)::int AS n FROM login_failures WHERE locked_until > now()`);
    expect(rows[0].n).toBe(2);
    // Locked: nothing cleared, the locked subjects returned.
    expect((await helper.query('SELECT * FROM clear_login_failures($1, $2)', [['user:zed'], ['user:zed', 'ip:10.5.5.5']])).rows).toEqual([
      { subject: 'user:zed', locked: true },
      { subject: 'ip:10.5.5.5', locked: true },
    ]);
    expect((await helper.query('SELECT * FROM clear_login_failures($1)', [['user:zed', 'ip:10.5.5.5']])).rows).toEqual([
      { subject: 'user:zed', locked: false },
      { subject: 'ip:10.5.5.5', locked: false },
    ]);
    expect((await store.sql.query('SELECT * FROM login_failures')).rowCount).toBe(0);
    // Arguments outside what the config allows are refused, not clamped.
    for (const args of [
      [[], 600, 2, 60],
      [['user:a', 'user:b', 'user:c', 'user:d', 'user:e'], 600, 2, 60],
      [['user:a'], 600, 2, 99_999_999],
      [['user:a'], 600, 0, 60],
    ]) {
      const error = await helper.query('SELECT * FROM record_login_failure($1, $2, $3, $4)', args).then(
        () => null,
        (e: { code?: string }) => e,
      );
      expect(error?.code).toBe('22023');
    }
  });

  it('rehashes only to a stronger bcrypt hash, and only over the hash it read', async () => {
    const { rows } = await store.sql.query(`SELECT password_hash FROM users WHERE name = 'alice'`);
    const current: string = rows[0].password_hash;
    const cost = Number(current.slice(4, 6));
    const stronger = bcrypt.hashSync('pw-alice', cost + 1);
    const rehash = (oldHash: string, newHash: string) =>
      helper.query('SELECT rehash_password($1, $2, $3) AS ok', ['alice', oldHash, newHash]);
    const refusal = (oldHash: string, newHash: string) =>
      rehash(oldHash, newHash).then(
        () => null,
        (e: Error & { code?: string }) => e,
      );

    const notBcrypt = await refusal(current, '{SHA}W6ph5Mm5Pz8GgiULbPgzG37mj9g=');
    expect(notBcrypt?.code).toBe('22023');
    expect(notBcrypt?.message).toMatch(/not a bcrypt hash/);
    expect((await refusal(current, bcrypt.hashSync('pw-alice', cost)))?.message).toMatch(/higher bcrypt cost/);
    expect((await rehash(bcrypt.hashSync('pw-alice', cost), stronger)).rows[0].ok).toBe(false);
    expect((await store.sql.query(`SELECT password_hash FROM users WHERE name = 'alice'`)).rows[0].password_hash).toBe(current);
    expect((await rehash(current, stronger)).rows[0].ok).toBe(true);
    expect((await store.sql.query(`SELECT password_hash FROM users WHERE name = 'alice'`)).rows[0].password_hash).toBe(stronger);
  });
});

describe('plexer db grant', () => {
  it('is idempotent and takes back anything granted by hand', async () => {
    const before = await privileges(store.helperRole);
    expect(before).toEqual([
      'clear_login_failures:EXECUTE',
      'daemon_groups:SELECT',
      'login_failures:SELECT',
      'record_login_failure:EXECUTE',
      'rehash_password:EXECUTE',
      'schema:USAGE',
      'session_delete:EXECUTE',
      'session_insert:EXECUTE',
      'session_load:EXECUTE',
      'session_update:EXECUTE',
      'user_roles:SELECT',
      'users:SELECT',
    ]);
    await store.sql.query(`GRANT INSERT, UPDATE ON users TO ${store.helperRole}`);
    await store.sql.query(`GRANT SELECT ON migrations TO ${store.helperRole}`);
    for (let i = 0; i < 2; i++) {
      const granted = await cli(['db', 'grant', '--helper-role', store.helperRole]);
      expect(granted.code, granted.stderr).toBe(0);
      expect(granted.stderr).toMatch(new RegExp(`helper role granted schema=plexer role=${store.helperRole} created=false`));
      expect(await privileges(store.helperRole)).toEqual(before);
    }
  });

  it('creates a missing role NOLOGIN (or LOGIN when asked), with no powers', async () => {
    const role = `${store.db.name}_extra`;
    try {
      const first = await cli(['db', 'grant', '--helper-role', role]);
      expect(first.code, first.stderr).toBe(0);
      expect(first.stderr).toMatch(/created=true/);
      const read = async () =>
        (await store.sql.query('SELECT rolcanlogin, rolsuper, rolcreatedb, rolcreaterole FROM pg_roles WHERE rolname = $1', [role]))
          .rows[0];
      expect(await read()).toEqual({ rolcanlogin: false, rolsuper: false, rolcreatedb: false, rolcreaterole: false });
      const second = await cli(['db', 'migrate', '--helper-role', role, '--login']);
      expect(second.code, second.stderr).toBe(0);
      expect(second.stderr).toMatch(/schema up to date/);
      expect(second.stderr).toMatch(/created=false login_added=true/);
      expect(await read()).toEqual({ rolcanlogin: true, rolsuper: false, rolcreatedb: false, rolcreaterole: false });
    } finally {
      await store.sql.query(`DROP OWNED BY ${role}`);
      await store.sql.query(`DROP ROLE IF EXISTS ${role}`);
    }
  });

  it('refuses a superuser, the owner of the schema, and a name that is not an identifier', async () => {
    const owner = (await store.sql.query<{ o: string }>(`SELECT nspowner::regrole::text AS o FROM pg_namespace WHERE nspname = 'plexer'`))
      .rows[0]!.o;
    const asOwner = await cli(['db', 'grant', '--helper-role', owner]);
    expect(asOwner.code).toBe(1);
    expect(asOwner.stderr).toMatch(/has SUPERUSER|owns/);
    // A member of the owner's role holds the owner's rights.
    const member = `${store.db.name}_member`;
    await store.sql.query(`CREATE ROLE ${member}`);
    await store.sql.query(`GRANT ${owner} TO ${member}`);
    try {
      const refused = await cli(['db', 'grant', '--helper-role', member]);
      expect(refused.code).toBe(1);
      expect(refused.stderr).toMatch(/owns \(or is a member of the owner of\) schema plexer.*pick another name/);
    } finally {
      await store.sql.query(`DROP ROLE ${member}`);
    }
    const powerful = `${store.db.name}_powerful`;
    await store.sql.query(`CREATE ROLE ${powerful} CREATEDB`);
    try {
      const refused = await cli(['db', 'grant', '--helper-role', powerful]);
      expect(refused.code).toBe(1);
      expect(refused.stderr).toMatch(new RegExp(`role "${powerful}" has CREATEDB; the helpers' role must have none`));
    } finally {
      await store.sql.query(`DROP ROLE ${powerful}`);
    }
    const bad = await cli(['db', 'grant', '--helper-role', 'Robert"; DROP TABLE users; --']);
    expect(bad.code).toBe(2);
    expect((await cli(['db', 'grant'])).code).toBe(2);
  });

  it("an admin command run as the helpers' role says what to configure", async () => {
    const s = parsePgUrl(store.db.url);
    const helperOnly = writeConfig(`postgresql://${store.helperRole}@/${s.database}?host=${s.host}&port=${s.port}`);
    const result = await cli(['user', 'disable', 'alice'], helperOnly);
    expect(result.code).toBe(2);
    expect(result.stderr).toMatch(/permission denied for table users/);
    expect(result.stderr).toMatch(/set admin_pg_user/);
  });
});

describe("the helpers as the helpers' role", () => {
  it('authn records failures, locks out, clears and rehashes', async () => {
    const authn = (password: string, ip: string, configPath = store.configPath) =>
      runPlexer(['authn'], { configPath, input: `alice\n${password}\n`, env: authnEnv(ip) });
    expect((await authn('wrong', '10.7.0.1')).code).toBe(12);
    expect((await store.sql.query(`SELECT failures FROM login_failures WHERE subject = 'user:alice'`)).rows).toEqual([{ failures: 1 }]);
    expect((await authn('pw-alice', '10.7.0.2')).code).toBe(0);
    expect((await store.sql.query(`SELECT 1 FROM login_failures WHERE subject = 'user:alice'`)).rowCount).toBe(0);
    for (const pw of ['a', 'b']) expect((await authn(pw, '10.7.0.3')).code).toBe(12);
    const third = await authn('c', '10.7.0.3');
    expect(third.stderr).toMatch(/lockout started subject=pair:alice\/10\.7\.0\.3 failures=3/);
    expect((await authn('pw-alice', '10.7.0.3')).code).toBe(14);
    expect((await cli(['user', 'unlock', 'alice'])).code).toBe(0);

    const { rows } = await store.sql.query(`SELECT password_hash FROM users WHERE name = 'alice'`);
    const cost = Number(String(rows[0].password_hash).slice(4, 6));
    const stronger = writeConfig(store.db.url, { bcrypt_cost: cost + 1, lockout_max_failures: 3 });
    const accepted = await authn('pw-alice', '10.7.0.5', stronger);
    expect(accepted.code, accepted.stderr).toBe(0);
    expect(accepted.stderr).toMatch(/password rehashed at the configured cost/);
    const after = await store.sql.query(`SELECT password_hash FROM users WHERE name = 'alice'`);
    expect(Number(String(after.rows[0].password_hash).slice(4, 6))).toBe(cost + 1);
    expect((await authn('pw-alice', '10.7.0.6')).code).toBe(0);
  });

  it('a helper whose role lacks its grants says what to run', async () => {
    const bare = `${store.db.name}_bare`;
    await store.sql.query(`CREATE ROLE ${bare} LOGIN`);
    try {
      const s = parsePgUrl(store.db.url);
      const config = writeConfig(`postgresql://${bare}@/${s.database}?host=${s.host}&port=${s.port}`);
      const authn = () => runPlexer(['authn'], { configPath: config, input: 'alice\npw-alice\n', env: authnEnv('10.8.0.1') });
      const unseen = await authn();
      expect(unseen.code).toBe(20);
      expect(unseen.stderr).toMatch(
        /does not exist: either pg_user lacks USAGE on plexer's schema \(as the admin run `plexer db grant --helper-role ROLE`/,
      );
      await store.sql.query(`GRANT USAGE ON SCHEMA plexer TO ${bare}`);
      const denied = await authn();
      expect(denied.code).toBe(20);
      expect(denied.stderr).toMatch(
        /permission denied for table \w+: the helpers' role \(pg_user\) lacks its grants; as the admin run `plexer db grant --helper-role ROLE`/,
      );
    } finally {
      await store.sql.query(`DROP OWNED BY ${bare}`);
      await store.sql.query(`DROP ROLE ${bare}`);
    }
  });

  it("a map connects as the helpers' role", async () => {
    const map = new MapProcess('group', store.configPath);
    try {
      await map.ask('alice');
      const { rows } = await store.sql.query(
        `SELECT DISTINCT usename FROM pg_stat_activity WHERE datname = $1 AND application_name LIKE 'plexer-map-group%'`,
        [store.db.name],
      );
      expect(rows).toEqual([{ usename: store.helperRole }]);
    } finally {
      await map.close();
    }
  });
});

// The README's install block (apache/INSTALL.md, "Least privilege in PostgreSQL"): the schema's owner is no
// superuser and has no CREATEROLE; a superuser made the roles.
describe('the Installing recipe, with an owner that is no superuser', () => {
  it("migrates, grants, manages accounts as the owner and authenticates as the helpers' role", async () => {
    const server = inject('pgUrl');
    const tag = `own_${Math.random().toString(36).slice(2, 8)}`;
    const su = new pg.Client({ connectionString: server });
    await su.connect();
    try {
      await su.query(`CREATE ROLE ${tag}_admin LOGIN`);
      await su.query(`CREATE ROLE ${tag}_helper LOGIN`);
      await su.query(`CREATE DATABASE ${tag} OWNER ${tag}_admin`);
      const s = parsePgUrl(withDatabase(server, tag));
      const config = writeConfig(`postgresql://${tag}_helper@/${tag}?host=${s.host}&port=${s.port}`, { admin_pg_user: `${tag}_admin` });
      const run = (args: string[], input?: string) => runPlexer(args, { configPath: config, ...(input ? { input } : {}) });
      const migrated = await run(['db', 'migrate', '--helper-role', `${tag}_helper`]);
      expect(migrated.code, migrated.stderr).toBe(0);
      expect((await run(['group', 'add', 'g1'])).code).toBe(0);
      expect((await run(['user', 'add', 'ann', '--group', 'g1', '--password-stdin'], 'pw-ann\n')).code).toBe(0);
      const authn = (password: string) =>
        runPlexer(['authn'], { configPath: config, input: `ann\n${password}\n`, env: authnEnv('10.9.0.1') });
      expect((await authn('wrong')).code).toBe(12);
      expect((await authn('pw-ann')).code).toBe(0);
      const missing = await run(['db', 'grant', '--helper-role', `${tag}_other`]);
      expect(missing.code).toBe(2);
      expect(missing.stderr).toMatch(
        new RegExp(
          `cannot create role "${tag}_other": .*create the role once as a superuser \\(psql: CREATE ROLE ${tag}_other NOLOGIN;\\)`,
        ),
      );
    } finally {
      await su.query(`DROP DATABASE IF EXISTS ${tag} WITH (FORCE)`);
      for (const role of ['helper', 'admin', 'other']) await su.query(`DROP ROLE IF EXISTS ${tag}_${role}`);
      await su.end();
    }
  });
});

// What `npm start` relies on: tenants run as OS users of their own on the same machine, so the demo's cluster
// must not trust whoever reaches its socket.
describe.runIf(process.getuid?.() === 0)("a private cluster with a peer map (the demo's)", () => {
  it('lets in only the mapped OS users, each only as its roles; without the map it is trust again', async () => {
    const dir = mkdtempSync('/tmp/pxl-');
    let cluster = await startPrivateCluster({
      dir,
      peerMap: [
        ['root', 'postgres'],
        ['www-data', 'demo_helper'],
      ],
    });
    try {
      const su = new pg.Client({ connectionString: cluster.url });
      await su.connect();
      await su.query('CREATE ROLE demo_helper LOGIN');
      await su.end();
      const psqlAs = (osUser: string, role: string) => {
        const r = spawnSync(
          'runuser',
          [
            '-u',
            osUser,
            '--',
            'psql',
            '-h',
            cluster.host,
            '-p',
            String(cluster.port),
            '-U',
            role,
            '-d',
            'postgres',
            '-AtXc',
            'SELECT current_user',
          ],
          { encoding: 'utf8', cwd: '/' },
        );
        return r.status === 0 ? r.stdout.trim() : `refused: ${r.stderr.trim()}`;
      };
      expect(psqlAs('www-data', 'demo_helper')).toBe('demo_helper');
      expect(psqlAs('www-data', 'postgres')).toMatch(/refused: .*Peer authentication failed for user "postgres"/);
      expect(psqlAs('nobody', 'demo_helper')).toMatch(/refused: .*Peer authentication failed/);
      expect(psqlAs('nobody', 'postgres')).toMatch(/refused: .*Peer authentication failed/);
      await cluster.stop();
      cluster = await startPrivateCluster({ dir });
      expect(psqlAs('nobody', 'postgres')).toBe('postgres');
    } finally {
      await cluster.stop();
      rmSync(dir, { recursive: true, force: true });
    }
  });
});
