// The mistakes of a first install, each answered with what to do instead of a stack trace: bin/plexer before a
// build, the schema not migrated, a missing or wrong password (a real server asking for scram-sha-256), an
// unknown group, a config file the caller may not read, and no host set (psql's local socket).
import { chmodSync, copyFileSync, mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { spawnSync } from 'node:child_process';
import pg from 'pg';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { formatConfig, type ConfigValues } from '../../src/config.js';
import { startPrivateCluster, type PrivateCluster } from '../../src/demo/private-cluster.js';
import { freshDatabase, parsePgUrl, type FreshDatabase } from '../helpers/database.js';
import { freshStore, PLEXER_BIN, runPlexer, type TestStore } from '../helpers/plexer.js';

const dirs: string[] = [];
function tempDir(prefix: string): string {
  const dir = mkdtempSync(join(tmpdir(), prefix));
  dirs.push(dir);
  return dir;
}
function config(values: ConfigValues): string {
  const path = join(tempDir('plexer-first-'), 'plexer.conf');
  writeFileSync(path, formatConfig(values));
  return path;
}

let store: TestStore;
let bare: FreshDatabase;
let scram: PrivateCluster;

beforeAll(async () => {
  store = await freshStore();
  bare = await freshDatabase();
  // A server of its own that asks for passwords (the shared test server trusts its socket).
  scram = await startPrivateCluster({ dir: tempDir('plexer-scram-') });
  const admin = new pg.Client({ connectionString: scram.url });
  await admin.connect();
  await admin.query("SET password_encryption = 'scram-sha-256'");
  await admin.query("CREATE ROLE pwuser LOGIN PASSWORD 'right-password'");
  writeFileSync(join(scram.dataDir, 'plexer_hba.conf'), 'local all postgres trust\nlocal all all scram-sha-256\n');
  await admin.query('SELECT pg_reload_conf()');
  await admin.end();
}, 120_000);

afterAll(async () => {
  await scram?.stop();
  await bare?.drop();
  await store?.close();
  for (const dir of dirs) rmSync(dir, { recursive: true, force: true });
});

describe('first-run errors', () => {
  it('bin/plexer before `npm run build` names the command to run', () => {
    const root = tempDir('plexer-unbuilt-');
    mkdirSync(join(root, 'bin'));
    copyFileSync(PLEXER_BIN, join(root, 'bin/plexer'));
    const result = spawnSync(process.execPath, [join(root, 'bin/plexer'), 'user', 'list'], { encoding: 'utf8', env: {} });
    expect(result.status).toBe(2);
    expect(result.stderr).toContain(`run \`cd ${root}/ && npm ci && npm run build\``);
    expect(result.stderr).not.toMatch(/\n\s+at /);
  });

  it("a database without plexer's schema: run `plexer db migrate`", async () => {
    const s = parsePgUrl(bare.url);
    const path = config({ pg_host: s.host, pg_port: s.port, pg_database: s.database, pg_user: s.user });
    for (const args of [
      ['user', 'list'],
      ['group', 'list'],
      ['user', 'unlock', 'alice'],
    ]) {
      const result = await runPlexer(args, { configPath: path });
      expect(result.code).toBe(2);
      expect(result.stderr).toMatch(/schema "plexer" is missing or out of date in this database; run `plexer db migrate`/);
      expect(result.stderr).not.toMatch(/\n\s+at /);
    }
  });

  it('no password, or a wrong one: names pg_password / pg_passfile, distinct from "cannot reach"', async () => {
    const base: ConfigValues = { pg_host: scram.host, pg_port: scram.port, pg_database: 'postgres', pg_user: 'pwuser' };
    const none = await runPlexer(['user', 'list'], { configPath: config(base) });
    expect(none.code).toBe(2);
    expect(none.stderr).toMatch(/refused the login \(no password is configured\): set pg_password or pg_passfile/);
    const wrong = await runPlexer(['user', 'list'], { configPath: config({ ...base, pg_password: 'Wrong-Secret-9' }) });
    expect(wrong.code).toBe(2);
    expect(wrong.stderr).toMatch(/refused the login \(password authentication failed for user "pwuser"\): set pg_password or pg_passfile/);
    expect(wrong.stderr).not.toContain('Wrong-Secret-9');
    expect(wrong.stderr).not.toContain('cannot reach');
    // The admin identity's password lives elsewhere, and the message says where.
    const asAdmin = await runPlexer(['user', 'list'], { configPath: config({ ...base, admin_pg_user: 'pwuser' }) });
    expect(asAdmin.stderr).toMatch(/set admin_pg_passfile/);
    // Right password, but no schema there: the next step, not an authentication error.
    const right = await runPlexer(['user', 'list'], { configPath: config({ ...base, pg_password: 'right-password' }) });
    expect(right.stderr).toMatch(/run `plexer db migrate`/);
    await scram.stop();
    const down = await runPlexer(['user', 'list'], { configPath: config({ ...base, pg_password: 'right-password' }) });
    expect(down.code).toBe(1);
    expect(down.stderr).toMatch(/cannot reach PostgreSQL at host=.* \(is it running\? check pg_host\/pg_port or database_url\)/);
    await scram.start();
  });

  it('an unknown group says how to create it (not a foreign-key message)', async () => {
    const added = await runPlexer(['user', 'add', 'ann', '--group', 'nosuch', '--password-stdin'], {
      configPath: store.configPath,
      input: 'pw-ann\n',
    });
    expect(added.code).toBe(1);
    expect(added.stderr).toContain('no daemon group "nosuch"; create it with `plexer group add nosuch`');
    expect(added.stderr).not.toMatch(/foreign key|is not present in table/);
    await runPlexer(['user', 'add', 'ann', '--group', 'none', '--password-stdin'], { configPath: store.configPath, input: 'pw-ann\n' });
    const moved = await runPlexer(['user', 'move', 'ann', '--group', 'nosuch'], { configPath: store.configPath });
    expect(moved.code).toBe(1);
    expect(moved.stderr).toContain('no daemon group "nosuch"');
  });

  it('a config file the caller may not read: what to do, no EACCES stack', () => {
    const path = config({ pg_port: 1 });
    chmodSync(path, 0o600);
    // As nobody (uid 65534): root reads every file.
    const result = spawnSync(process.execPath, [PLEXER_BIN, 'user', 'list', '--config', path], {
      encoding: 'utf8',
      env: {},
      cwd: '/',
      uid: 65534,
      gid: 65534,
    });
    expect(result.status).toBe(2);
    expect(result.stderr).toContain(`cannot read config file ${path}: permission denied for uid 65534`);
    expect(result.stderr).toContain('mode 640, root:www-data');
    expect(result.stderr).not.toMatch(/\n\s+at /);
  });

  it('no host set: the local socket /var/run/postgresql, as psql, not 127.0.0.1:5432', async () => {
    const result = await runPlexer(['user', 'list'], { configPath: config({ pg_port: 1, pg_user: 'nobody_here' }) });
    expect(result.code).toBe(1);
    expect(result.stderr).toContain('cannot reach PostgreSQL at host=/var/run/postgresql port=1');
    expect(result.stderr).toMatch(/\/var\/run\/postgresql\/\.s\.PGSQL\.1/);
    expect(result.stderr).not.toMatch(/127\.0\.0\.1|ECONNREFUSED/);
  });
});
