// `plexer sync` against a real PostgreSQL and a REAL Apache httpd reading the maps with `dbm=gdbm:`.
import { execFileSync, spawn, type ChildProcess } from 'node:child_process';
import { chmodSync, existsSync, mkdirSync, mkdtempSync, readdirSync, rmSync, statSync, writeFileSync } from 'node:fs';
import http from 'node:http';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ANSWER_MARK } from '../../src/protocol/rewrite-map.js';
import { freePort, startHttpd, type Httpd } from '../helpers/httpd.js';
import { freshStore, PLEXER_BIN, runPlexer, writeConfig, type TestStore } from '../helpers/plexer.js';
import { waitFor } from '../helpers/wait.js';

const HASH = '$2b$04$' + 'a'.repeat(53);
const haveApache =
  existsSync('/usr/sbin/apache2') &&
  existsSync('/usr/sbin/httxt2dbm') &&
  existsSync('/usr/lib/apache2/modules/mod_rewrite.so') &&
  process.getuid?.() === 0;
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

class SyncProcess {
  readonly child: ChildProcess;
  stderr = '';
  readonly exited: Promise<number | null>;

  constructor(dir: string, configPath: string) {
    this.child = spawn(process.execPath, [PLEXER_BIN, 'sync', '--dir', dir, '--config', configPath], {
      env: {},
      cwd: '/',
      stdio: ['ignore', 'ignore', 'pipe'],
    });
    this.child.stderr!.setEncoding('utf8');
    this.child.stderr!.on('data', (d: string) => (this.stderr += d));
    this.exited = new Promise((resolve) => this.child.once('exit', (code) => resolve(code)));
  }

  rebuilds(): number {
    return (this.stderr.match(/ maps rebuilt /g) ?? []).length;
  }

  // The user counts of the rebuilds so far, in order.
  rebuiltUsers(): number[] {
    return [...this.stderr.matchAll(/ maps rebuilt users=(\d+) /g)].map((m) => Number(m[1]));
  }

  async waitForRebuilds(count: number, limitMs = 10_000): Promise<void> {
    await waitFor(
      () => {
        if (this.child.exitCode !== null) throw new Error(`sync exited before rebuilding ${count} time(s); stderr:\n${this.stderr}`);
        return this.rebuilds() >= count;
      },
      limitMs,
      () => `sync to rebuild ${count} time(s); stderr:\n${this.stderr}`,
    );
  }

  async stop(signal: NodeJS.Signals = 'SIGTERM'): Promise<number | null> {
    if (this.child.exitCode === null && this.child.signalCode === null) this.child.kill(signal);
    return this.exited;
  }
}

const agent = new http.Agent({ keepAlive: true, maxSockets: 4 });

// The rule answers with a redirect to /answer/<map value or default>.
function ask(httpd: Httpd, path: string): Promise<string> {
  return new Promise((resolve, reject) => {
    const req = http.get(`${httpd.url}${path}`, { agent }, (res) => {
      res.resume();
      const location = res.headers.location ?? '';
      if (res.statusCode !== 302) return reject(new Error(`${path}: status ${res.statusCode}`));
      // Every value names its key behind the mark ("#alice=alpha"); a value stored under another key would be a
      // routing bug.
      const value = decodeURIComponent(location.replace(/^https?:\/\/[^/]+/, '').replace(/^\/answer\//, ''));
      const key = decodeURIComponent(path.replace(/^\/[a-z]+\//, ''));
      if (value === 'NONE') return resolve(value);
      const named = `${ANSWER_MARK}${key}=`;
      if (!value.startsWith(named)) return reject(new Error(`${path}: answer ${JSON.stringify(value)} does not name its key`));
      resolve(value.slice(named.length));
    });
    req.on('error', reject);
  });
}

async function waitForAnswer(httpd: Httpd, path: string, expected: string, limitMs = 5_000): Promise<number> {
  const start = performance.now();
  let answer = '';
  await waitFor(
    async () => (answer = await ask(httpd, path)) === expected,
    limitMs,
    () => `${path} to answer "${expected}" (still "${answer}")`,
    5,
  );
  return performance.now() - start;
}

function httpdConfig(root: string, port: number, mapDir: string, emptyDir: string): string {
  const run = join(root, 'httpd');
  const modules = '/usr/lib/apache2/modules';
  return `ServerRoot /etc/apache2
Listen 127.0.0.1:${port}
ServerName 127.0.0.1
PidFile ${run}/httpd.pid
DefaultRuntimeDir ${run}
Mutex file:${run} default
ErrorLog ${run}/error.log
LogLevel warn
User www-data
Group www-data
LoadModule mpm_event_module ${modules}/mod_mpm_event.so
LoadModule authz_core_module ${modules}/mod_authz_core.so
LoadModule rewrite_module ${modules}/mod_rewrite.so
StartServers 2
DocumentRoot ${root}/htdocs
<Directory ${root}/htdocs>
  Require all granted
</Directory>
RewriteEngine On
RewriteMap grp "dbm=gdbm:${mapDir}/group.map"
RewriteMap set "dbm=gdbm:${mapDir}/settings.map"
RewriteMap back "dbm=gdbm:${mapDir}/backend.map"
RewriteMap empty "dbm=gdbm:${emptyDir}/group.map"
RewriteRule ^/who/([^/]+)$ /answer/\${grp:$1|NONE} [R=302,L]
RewriteRule ^/settings/([^/]+)$ /answer/\${set:$1|NONE} [R=302,L]
RewriteRule ^/backend/([^/]+)$ /answer/\${back:$1|NONE} [R=302,L]
RewriteRule ^/empty/([^/]+)$ /answer/\${empty:$1|NONE} [R=302,L]
`;
}

describe.skipIf(!haveApache)('plexer sync: dbm RewriteMap files served by a real Apache', () => {
  let store: TestStore;
  let root: string;
  let mapDir: string;
  let emptyDir: string;
  let httpd: Httpd;
  let sync: SyncProcess;

  beforeAll(async () => {
    store = await freshStore();
    root = mkdtempSync(join(tmpdir(), 'plexer-sync-'));
    chmodSync(root, 0o755);
    mapDir = join(root, 'maps');
    emptyDir = join(root, 'empty');
    for (const d of [mapDir, emptyDir, join(root, 'htdocs')]) mkdirSync(d, { mode: 0o755 });
    chmodSync(mapDir, 0o755);
    chmodSync(emptyDir, 0o755);
    writeFileSync(join(root, 'htdocs', 'index.html'), 'ok\n');

    // Zero users and zero groups: httxt2dbm gets an empty input.
    const once = await runPlexer(['sync', '--once', '--dir', emptyDir], { configPath: store.configPath });
    expect(once.code, once.stderr).toBe(0);
    expect(once.stderr).toMatch(/maps rebuilt users=0 groups=0/);

    await store.sql.query(`INSERT INTO daemon_groups (name, settings_module, backend) VALUES
      ('alpha', 'tenants.settings.alpha', 'http://127.0.0.1:9001'), ('beta', 'tenants.settings.beta', NULL),
      ('closed', 'tenants.settings.closed', 'http://127.0.0.1:9003')`);
    await store.sql.query(`UPDATE daemon_groups SET enabled = false WHERE name = 'closed'`);
    await store.sql.query(
      `INSERT INTO users (name, password_hash, daemon_group, disabled) VALUES
        ('alice', $1, 'alpha', false), ('bob', $1, 'beta', false), ('carol', $1, 'alpha', true),
        ('dave', $1, 'closed', false), ('erin', $1, NULL, false), ('frank@example.com', $1, 'alpha', false)`,
      [HASH],
    );
    sync = new SyncProcess(mapDir, store.configPath);
    await sync.waitForRebuilds(1);
    const port = await freePort();
    httpd = await startHttpd({ config: httpdConfig(root, port, mapDir, emptyDir), dir: join(root, 'httpd') });
  });

  afterAll(async () => {
    await sync?.stop('SIGKILL');
    await httpd?.stop();
    agent.destroy();
    await store?.close();
    if (root) rmSync(root, { recursive: true, force: true });
  });

  it('writes three GDBM files, mode 0640 root:www-data (Apache reads them, tenants cannot), and no temp files', () => {
    const wwwData = Number(execFileSync('id', ['-g', 'www-data'], { encoding: 'utf8' }).trim());
    for (const name of ['group.map', 'settings.map', 'backend.map']) {
      const st = statSync(join(mapDir, name));
      expect(st.mode & 0o777, name).toBe(0o640);
      expect([st.uid, st.gid], name).toEqual([0, wwwData]);
    }
    expect(readdirSync(mapDir).sort()).toEqual(['backend.map', 'group.map', 'settings.map']);
  });

  it('Apache answers from the files: known users, unknown, disabled, settings and backend', async () => {
    expect(await ask(httpd, '/who/alice')).toBe('alpha');
    expect(await ask(httpd, '/who/bob')).toBe('beta');
    expect(await ask(httpd, '/who/frank@example.com')).toBe('alpha');
    expect(await ask(httpd, '/who/nobody')).toBe('NONE');
    expect(await ask(httpd, '/who/carol')).toBe('NONE'); // disabled user
    expect(await ask(httpd, '/who/dave')).toBe('NONE'); // disabled group
    expect(await ask(httpd, '/who/erin')).toBe('NONE'); // no group
    expect(await ask(httpd, '/settings/alpha')).toBe('tenants.settings.alpha');
    expect(await ask(httpd, '/settings/closed')).toBe('NONE');
    expect(await ask(httpd, '/backend/alice')).toMatch(/^http:\/\/127\.0\.0\.1:9001;[0-9a-f]{32}$/);
    expect(await ask(httpd, '/backend/bob')).toBe('NONE'); // group without backend
  });

  it('an empty map (zero users) is a valid file: Apache returns the default', async () => {
    expect(statSync(join(emptyDir, 'group.map')).size).toBeGreaterThan(0);
    expect(await ask(httpd, '/empty/alice')).toBe('NONE');
    expect(httpd.errorLog()).not.toMatch(/empty\/group\.map|cannot open/i);
  });

  it('a move made with plain SQL is served by Apache within 1 second', async () => {
    const before = sync.rebuilds();
    const start = performance.now();
    await store.sql.query(`UPDATE users SET daemon_group = 'beta' WHERE name = 'alice'`);
    const ms = await waitForAnswer(httpd, '/who/alice', 'beta', 3_000);
    const total = performance.now() - start;
    console.log(`propagation SQL UPDATE -> Apache answer: ${total.toFixed(0)} ms (polling from commit: ${ms.toFixed(0)} ms)`);
    await store.sql.query(`UPDATE users SET daemon_group = 'alpha' WHERE name = 'alice'`);
    await waitForAnswer(httpd, '/who/alice', 'alpha', 3_000);
    expect(total).toBeLessThan(1_000);
    // The log line follows the rename, so it may reach us after Apache already answers from the new file.
    await sync.waitForRebuilds(before + 1);
  });

  it('a burst of 500 changes in one transaction is coalesced into few rebuilds', async () => {
    // The burst's rebuilds are those that read it: 500 users more than any before (a rebuild still due to an
    // earlier change reads the old count and is not counted).
    const usersBefore = Math.max(...sync.rebuiltUsers());
    const ofBurst = () => sync.rebuiltUsers().filter((users) => users >= usersBefore + 500).length;
    const statements = ['BEGIN'];
    for (let i = 0; i < 500; i++) {
      statements.push(
        `INSERT INTO users (name, password_hash, daemon_group) VALUES ('burst${i}', '${HASH}', '${i % 2 ? 'alpha' : 'beta'}')`,
      );
    }
    statements.push('COMMIT');
    await store.sql.query(statements.join(';\n'));
    await waitForAnswer(httpd, '/who/burst499', 'alpha', 3_000);
    // The log line follows the rename, so it may come after Apache already answers from the new file.
    await waitFor(() => ofBurst() >= 1, 5_000, 'a rebuild that read the burst');
    // A negative check: a straggling rebuild (notifications heard after the first one started) would come
    // within the coalescing delay (150 ms) plus one rebuild; none beyond the bound may come in 600 ms.
    await sleep(600);
    const rebuilds = ofBurst();
    console.log(`500 changes in one transaction -> ${rebuilds} rebuild(s)`);
    expect(rebuilds).toBeGreaterThanOrEqual(1);
    expect(rebuilds).toBeLessThanOrEqual(3);
    for (let i = 0; i < 500; i++) expect(await ask(httpd, `/who/burst${i}`)).toBe(i % 2 ? 'alpha' : 'beta');
  });

  it('never serves a torn map while the files are replaced again and again', async () => {
    const N = 40;
    await store.sql.query(
      `INSERT INTO users (name, password_hash, daemon_group) SELECT 'torn' || i, $1, 'alpha' FROM generate_series(0, ${N - 1}) i`,
      [HASH],
    );
    // Some bulk so each httxt2dbm run and each file are not trivially small.
    await store.sql.query(
      `INSERT INTO users (name, password_hash, daemon_group) SELECT 'bulk' || i, $1, 'beta' FROM generate_series(1, 10000) i`,
      [HASH],
    );
    await waitForAnswer(httpd, '/who/bulk10000', 'beta', 5_000);
    const rebuildsBefore = sync.rebuilds();
    let writing = true;
    let flips = 0;
    const writer = (async () => {
      while (writing) {
        const target = flips % 2 ? 'alpha' : 'beta';
        await store.sql.query(`UPDATE users SET daemon_group = $1 WHERE name LIKE 'torn%'`, [target]);
        flips++;
        await sleep(20); // the writer's pace (a flip every ~20 ms), not a wait for anything
      }
    })();
    const answers = new Map<string, number>();
    let requests = 0;
    // At least 3 s and 8 file replacements (fewer per second when the machine is busy), at most 12 s.
    const minUntil = Date.now() + 3_000;
    const maxUntil = Date.now() + 12_000;
    const more = () => Date.now() < maxUntil && (Date.now() < minUntil || sync.rebuilds() - rebuildsBefore < 8);
    const reader = async (offset: number) => {
      for (let i = offset; more(); i++) {
        const answer = await ask(httpd, `/who/torn${i % N}`);
        answers.set(answer, (answers.get(answer) ?? 0) + 1);
        requests++;
      }
    };
    await Promise.all([reader(0), reader(N / 2)]);
    writing = false;
    await writer;
    const rebuilds = sync.rebuilds() - rebuildsBefore;
    console.log(
      `torn-map check: ${requests} requests, ${flips} flips, ${rebuilds} file replacements, answers ${JSON.stringify(Object.fromEntries(answers))}`,
    );
    expect(rebuilds).toBeGreaterThanOrEqual(8);
    for (const answer of answers.keys()) expect(['alpha', 'beta']).toContain(answer);
    expect(httpd.errorLog()).not.toMatch(/map lookup FAILED|cannot open DBM|exit signal/i);
  });

  it('a rebuild follows a reconnection of the store', async () => {
    // A rebuild still running from the torn-map check fails with the connection and is retried; the
    // reconnection asks for its own rebuild either way, and that one says so.
    const before = sync.stderr.length;
    await store.sql.query(
      `SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE application_name = 'plexer-sync' AND datname = current_database()`,
    );
    await waitFor(
      () => /maps rebuilt .*reason=reconnected/.test(sync.stderr.slice(before)),
      10_000,
      () => `a rebuild after the reconnection:\n${sync.stderr.slice(before)}`,
    );
    expect(sync.stderr.slice(before)).toMatch(/listen connection lost/);
  });

  it('SIGKILL leaves routing intact; a restarted sync catches up with changes made meanwhile', async () => {
    expect(await ask(httpd, '/who/bob')).toBe('beta');
    await sync.stop('SIGKILL');
    await store.sql.query(`UPDATE users SET daemon_group = 'alpha' WHERE name = 'bob'`);
    await store.sql.query(`INSERT INTO users (name, password_hash, daemon_group) VALUES ('grace', $1, 'beta')`, [HASH]);
    // A negative check: with a live sync these changes would be in the files within the 500 ms (about 0.2 s).
    await sleep(500);
    // Apache keeps serving the last file.
    expect(await ask(httpd, '/who/bob')).toBe('beta');
    expect(await ask(httpd, '/who/alice')).toBe('alpha');
    expect(await ask(httpd, '/who/grace')).toBe('NONE');
    sync = new SyncProcess(mapDir, store.configPath);
    await sync.waitForRebuilds(1);
    await waitForAnswer(httpd, '/who/bob', 'alpha', 3_000);
    expect(await ask(httpd, '/who/grace')).toBe('beta');
    expect(readdirSync(mapDir).filter((n) => n.startsWith('.'))).toEqual([]);
  });

  it('SIGTERM ends sync with status 0', async () => {
    const code = await sync.stop('SIGTERM');
    expect(code).toBe(0);
    expect(sync.stderr).toMatch(/sync stopped/);
  });

  it('refuses a map directory others may write (world or group, sticky or not): exit 2, nothing written', async () => {
    for (const mode of [0o777, 0o1777, 0o775]) {
      const open = join(root, `open-${mode.toString(8)}`);
      mkdirSync(open);
      chmodSync(open, mode);
      const once = await runPlexer(['sync', '--once', '--dir', open], { configPath: store.configPath });
      expect(once.code, once.stderr).toBe(2);
      expect(once.stderr).toContain(`map directory ${open} may be written by others (mode ${mode.toString(8)}`);
      expect(readdirSync(open)).toEqual([]);
    }
  });

  it('an unreachable store keeps the last good files: --once exits 1, the service keeps retrying', async () => {
    const port = await freePort();
    const deadConfig = writeConfig(`postgresql://nobody@127.0.0.1:${port}/nothing`);
    const before = statSync(join(mapDir, 'group.map'));
    const once = await runPlexer(['sync', '--once', '--dir', mapDir], { configPath: deadConfig });
    expect(once.code, once.stderr).toBe(1);
    const service = new SyncProcess(mapDir, deadConfig);
    try {
      // A negative check: the service must still be running (retrying) 1.5 s on, after several refused attempts.
      await sleep(1_500);
      expect(service.child.exitCode).toBeNull();
      expect(await service.stop('SIGTERM')).toBe(0);
      expect(service.stderr).toMatch(/listen connection lost .*ECONNREFUSED/);
    } finally {
      await service.stop('SIGKILL');
    }
    const after = statSync(join(mapDir, 'group.map'));
    expect([after.ino, after.size, after.mtimeMs]).toEqual([before.ino, before.size, before.mtimeMs]);
    expect(await ask(httpd, '/who/bob')).toBe('alpha');
  });

  it('configuration errors exit 2', async () => {
    const missing = await runPlexer(['sync', '--dir', join(root, 'no-such-dir')], { configPath: store.configPath });
    expect(missing.code).toBe(2);
    expect(missing.stderr).toMatch(/no-such-dir/);
    const noDir = await runPlexer(['sync'], { configPath: store.configPath });
    expect(noDir.code).toBe(2);
    const badConfig = await runPlexer(['sync', '--dir', mapDir], { configPath: join(root, 'missing.conf') });
    expect(badConfig.code).toBe(2);
  });
});
