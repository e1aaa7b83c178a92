// plexer group exec: a real `python3 manage.py migrate` of the example project once per group, as each group's
// own OS user, with the group's settings and data directory; exit status per group and overall.
import { execFileSync } from 'node:child_process';
import { chmodSync, mkdtempSync, rmSync, statSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { freshStore, runPlexer, type TestStore } from '../helpers/plexer.js';

const USERS = ['plexer-gx-a', 'plexer-gx-b'] as const;
const exists = (db: 'passwd' | 'group', key: string) => {
  try {
    execFileSync('getent', [db, key], { stdio: 'ignore' });
    return true;
  } catch {
    return false;
  }
};
const uidOf = (user: string) => Number(execFileSync('id', ['-u', user], { encoding: 'utf8' }).trim());

let store: TestStore;
let root: string;
let dataDir: string;
const created: string[] = [];
const cli = (args: string[]) => runPlexer(args, { configPath: store.configPath });
// --config must come before "--": everything after it is the command.
const exec = (args: string[], command: string[], env: NodeJS.ProcessEnv = {}) =>
  runPlexer(['group', 'exec', ...args, '--config', store.configPath, '--', ...command], { env });

beforeAll(async () => {
  store = await freshStore();
  root = mkdtempSync(join(tmpdir(), 'plexer-gx-'));
  // The tenants must traverse it to reach DATA-DIR (which group exec makes 0711 itself).
  chmodSync(root, 0o711);
  dataDir = join(root, 'data');
  for (const u of USERS) if (!exists('passwd', u)) created.push(u);
  const add = async (args: string[]) => expect((await cli(['group', 'add', ...args])).code).toBe(0);
  await add(['gxa', '--settings', 'tenants.settings_generic', '--run-as', USERS[0], '--create-user']);
  await add(['gxb', '--settings', 'tenants.settings_generic', '--run-as', USERS[1], '--create-user']);
  await add(['gxw', '--settings', 'tenants.settings_generic']);
  await add(['gxoff', '--settings', 'tenants.settings_generic', '--disabled']);
});

afterAll(async () => {
  await store?.close();
  if (root) rmSync(root, { recursive: true, force: true });
  for (const u of created) {
    execFileSync('userdel', [u], { stdio: 'ignore' });
    if (exists('group', u)) execFileSync('groupdel', [u], { stdio: 'ignore' });
  }
});

describe('plexer group exec', () => {
  it('--all runs manage.py migrate per enabled group, as its user, creating its own SQLite database', async () => {
    const result = await exec(['--all', '--data-dir', dataDir, '--jobs', '2'], ['python3', 'manage.py', 'migrate']);
    expect(result.code, result.stderr).toBe(0);
    expect(result.stdout).toMatch(/^gxa: ok$/m);
    expect(result.stdout).toMatch(/^gxb: ok$/m);
    expect(result.stdout).toMatch(/^gxw: ok$/m);
    expect(result.stdout).not.toMatch(/gxoff/);
    expect(result.stdout).toMatch(/^\[gxa\] .*Applying|^\[gxa\] Operations to perform/m);
    expect(result.stderr).toMatch(/gx[abw] exited 0 \(3\/3 done\)/);
    const owners = { gxa: uidOf(USERS[0]), gxb: uidOf(USERS[1]), gxw: uidOf('www-data') };
    for (const [group, uid] of Object.entries(owners)) {
      const db = statSync(join(dataDir, group, `${group}.sqlite3`));
      expect([group, db.uid]).toEqual([group, uid]);
      const dir = statSync(join(dataDir, group));
      expect([group, dir.uid, dir.mode & 0o777]).toEqual([group, uid, 0o700]);
    }
    // Django really migrated that database.
    const tables = execFileSync(
      'python3',
      [
        '-c',
        `import sqlite3; print(sqlite3.connect(${JSON.stringify(join(dataDir, 'gxa', 'gxa.sqlite3'))}).execute("select name from sqlite_master where name='django_migrations'").fetchall())`,
      ],
      { encoding: 'utf8' },
    );
    expect(tables).toContain('django_migrations');
  });

  it("gives the command the group's environment and user, and none of the caller's variables", async () => {
    const script = 'id -un; id -G; echo "$DJANGO_SETTINGS_MODULE|$PLEXER_GROUP|$PLEXER_DATA_DIR|$PYTHONPATH|${CALLER_SECRET:-unset}"; pwd';
    const result = await exec(['gxb', '--data-dir', dataDir], ['sh', '-c', script], { CALLER_SECRET: 'x' });
    expect(result.code, result.stderr).toBe(0);
    const lines = result.stdout
      .split('\n')
      .filter((l) => l.startsWith('[gxb] '))
      .map((l) => l.slice(6));
    expect(lines[0]).toBe(USERS[1]);
    const gid = Number(execFileSync('id', ['-g', USERS[1]], { encoding: 'utf8' }).trim());
    expect(lines[1]).toBe(String(gid));
    expect(lines[2]).toMatch(new RegExp(`^tenants\\.settings_generic\\|gxb\\|${join(dataDir, 'gxb')}\\|/.*/apache/example\\|unset$`));
    expect(lines[3]).toMatch(/\/apache\/example$/);
  });

  it("reports each group's exit status and exits 1 if any failed", async () => {
    const result = await exec(
      ['--all', '--data-dir', dataDir],
      ['python3', '-c', 'import os, sys; sys.exit(3 if os.environ["PLEXER_GROUP"] == "gxb" else 0)'],
    );
    expect(result.code).toBe(1);
    expect(result.stdout).toMatch(/^gxa: ok$/m);
    expect(result.stdout).toMatch(/^gxb: failed \(exit 3\)$/m);
    expect(result.stdout).toMatch(/^gxw: ok$/m);
    const missing = await exec(['gxa', '--data-dir', dataDir], ['/nonexistent/cmd']);
    expect(missing.code).toBe(1);
    expect(missing.stderr).toMatch(/\[gxa\] cannot run \/nonexistent\/cmd: .*ENOENT/);
  });

  it('refuses an unknown group and a missing command', async () => {
    const unknown = await exec(['nosuch'], ['true']);
    expect([unknown.code, unknown.stderr]).toEqual([1, expect.stringContaining('no daemon group "nosuch"')]);
    const none = await exec(['gxa', '--data-dir', dataDir], []);
    expect([none.code, none.stderr]).toEqual([2, expect.stringContaining('give the command after "--"')]);
  });
});
