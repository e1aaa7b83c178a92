// plexer doctor against a real Apache and PostgreSQL: all well, then a group Apache's config lacks (doctor
// fails, `user move` warns), a lockout, a config www-data cannot read, a database without plexer's schema.
import { chmodSync, existsSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { formatConfig } from '../../src/config.js';
import { freshDatabase, parsePgUrl, type FreshDatabase } from '../helpers/database.js';
import { seedTwoTenants, startTestFront, waitUntilServed, type TestFront } from '../helpers/front.js';
import { runPlexer } from '../helpers/plexer.js';
import { lockoutProcesses } from '../helpers/apache-procs.js';
import { waitFor } from '../helpers/wait.js';

let t: TestFront;
let bare: FreshDatabase;
const doctor = (configPath = t.configPath) => runPlexer(['doctor', '--apache-config', t.front.httpd.configPath], { configPath });
const line = (out: string, name: string) => out.split('\n').find((l) => l.includes(` ${name}: `)) ?? `(no ${name} line)`;

beforeAll(async () => {
  t = await startTestFront(seedTwoTenants);
  bare = await freshDatabase();
  await waitUntilServed(t, 'alice', 'alice-pw');
  await waitFor(() => existsSync(join(t.front.lockDir, 'refused.sock')), 15_000, 'plexer lockout to serve the 401 page');
}, 90_000);

afterAll(async () => {
  await bare?.drop();
  await t?.close();
});

describe('plexer doctor', () => {
  it('passes on a working installation, one line per check', async () => {
    const result = await doctor();
    expect(result.code, result.stdout).toBe(0);
    expect(line(result.stdout, 'config')).toMatch(/^ok {4}config: .* parses and www-data can read it$/);
    expect(line(result.stdout, 'database')).toMatch(/^ok/);
    expect(line(result.stdout, 'schema')).toMatch(/^ok {4}schema: at version \d+$/);
    expect(line(result.stdout, 'apache groups')).toMatch(/^ok {4}apache groups: all 2 enabled group\(s\) are in /);
    expect(line(result.stdout, 'lockouts')).toMatch(/^ok/);
    expect(line(result.stdout, 'maps')).toMatch(/^ok {4}maps: [1-9]\d* "plexer map" process\(es\) running/);
    expect(line(result.stdout, 'lockout')).toMatch(
      /^ok {4}lockout: "plexer lockout" counts refused logins before their answer; lock files in \/dev\/shm\//,
    );
  });

  it('fails while the 401 page is not served, until Apache has restarted the logger', async () => {
    const socket = join(t.front.lockDir, 'refused.sock');
    rmSync(socket);
    const result = await doctor();
    expect(result.code).toBe(1);
    expect(line(result.stdout, 'lockout')).toMatch(
      /^FAIL  lockout: nothing answers on .*refused\.sock: 401s are answered before they are counted/,
    );
    // A new logger makes a new socket: Apache restarts a piped logger that dies.
    for (const pid of lockoutProcesses(t.front.httpd.pid)) process.kill(pid, 'SIGKILL');
    await waitFor(() => existsSync(socket), 15_000, 'Apache to restart plexer lockout');
    expect((await doctor()).code).toBe(0);
  });

  it('fails on a group Apache does not know yet, and user move warns about it', async () => {
    expect((await t.cli(['group', 'add', 'tenant3', '--settings', 'tenants.settings_generic'])).code).toBe(0);
    const result = await doctor();
    expect(result.code).toBe(1);
    expect(line(result.stdout, 'apache groups')).toMatch(/^FAIL  apache groups: tenant3 in the database but not in .*apache2ctl graceful$/);
    const moved = await runPlexer(['user', 'move', 'bob', '--group', 'tenant3', '--apache-config', t.front.httpd.configPath], {
      configPath: t.configPath,
    });
    expect(moved.code).toBe(0);
    expect(moved.stderr).toMatch(/warning: daemon group "tenant3" is not in the Apache config .*: bob gets the 503 page/);
    const back = await runPlexer(['user', 'move', 'bob', '--group', 'tenant2', '--apache-config', t.front.httpd.configPath], {
      configPath: t.configPath,
    });
    expect([back.code, back.stderr]).toEqual([0, '']);
    expect((await t.cli(['group', 'del', 'tenant3'])).code).toBe(0);
    expect((await doctor()).code).toBe(0);
  });

  it('lists locked-out users as a warning', async () => {
    await t.store.sql.query(
      "INSERT INTO login_failures (subject, failures, locked_until) VALUES ('user:alice', 10, now() + interval '10 minutes')",
    );
    const result = await doctor();
    expect(result.code).toBe(0);
    expect(line(result.stdout, 'lockouts')).toMatch(/^warn  lockouts: alice until \d{4}-.* \(plexer user unlock NAME\)$/);
    await t.store.sql.query("DELETE FROM login_failures WHERE subject = 'user:alice'");
  });

  it('fails when www-data cannot read the config file', async () => {
    chmodSync(t.configPath, 0o600);
    try {
      const result = await doctor();
      expect(result.code).toBe(1);
      expect(line(result.stdout, 'config')).toMatch(/^FAIL  config: www-data cannot read .*chmod 640/);
    } finally {
      chmodSync(t.configPath, 0o644);
    }
  });

  it("fails on a database without plexer's schema, and names the fix", async () => {
    const s = parsePgUrl(bare.url);
    const path = join(t.stateDir, 'bare.conf');
    writeFileSync(path, formatConfig({ pg_host: s.host, pg_port: s.port, pg_database: s.database, pg_user: s.user }));
    const result = await doctor(path);
    expect(result.code).toBe(1);
    expect(line(result.stdout, 'database')).toMatch(/^FAIL  database: .*run `plexer db migrate`/);
    // No map runs with that config file.
    expect(line(result.stdout, 'maps')).toMatch(/^FAIL  maps: no "plexer map" process runs with --config /);
  });
});
