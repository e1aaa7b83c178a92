// Runs plexer the way Apache does: as a child process with a config file and a bare environment.
import { spawn, type ChildProcessWithoutNullStreams } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import pg from 'pg';
import { inject } from 'vitest';
import { formatConfig, type ConfigValues } from '../../src/config.js';
import { ANSWER_MARK } from '../../src/protocol/rewrite-map.js';
import { freshDatabase, parsePgUrl, type FreshDatabase } from './database.js';
import { waitFor } from './wait.js';

export const REPO_ROOT = fileURLToPath(new URL('../../', import.meta.url));
export const PLEXER_BIN = join(REPO_ROOT, 'bin/plexer');

export interface TestStore {
  db: FreshDatabase;
  configPath: string;
  // The role the helpers connect as (pg_user), granted by `plexer db migrate --helper-role`; the admin commands
  // connect as the test server's superuser (admin_pg_user).
  helperRole: string;
  // Plain SQL access, as an operator with psql would have.
  sql: pg.Pool;
  close(): Promise<void>;
}

// Roles are cluster-wide: one helpers' role per test database keeps parallel test files apart.
const helperRoles = new Map<string, string>();

// The connection settings of a config file for `url`'s database: once freshStore has granted it a helpers'
// role, the helpers connect as that role and the admin commands as the URL's (super)user, so every test runs
// the helpers with least privilege. (A password in the URL is the admin's; the helpers' role has none, so
// such a server is used with the one identity.)
export function connectionValues(url: string): ConfigValues {
  const s = parsePgUrl(url);
  const helper = s.password ? undefined : helperRoles.get(url);
  return {
    pg_host: s.host,
    pg_port: s.port,
    pg_database: s.database,
    ...(helper ? { pg_user: helper, admin_pg_user: s.user } : { pg_user: s.user }),
    ...(s.password ? { pg_password: s.password } : {}),
  };
}

export function writeConfig(url: string, extra: ConfigValues = {}): string {
  const dir = mkdtempSync(join(tmpdir(), 'plexer-conf-'));
  process.once('exit', () => rmSync(dir, { recursive: true, force: true }));
  const path = join(dir, 'plexer.conf');
  // These tests check answers, not the deadline (test/store/helpers-outage.test.ts does, with the default 50 ms): a loaded
  // CI machine must not turn a slow first query into a "no value" answer.
  writeFileSync(path, formatConfig({ ...connectionValues(url), bcrypt_cost: 4, map_deadline_ms: 2000, ...extra }));
  return path;
}

export async function freshStore(extraConfig: ConfigValues = {}): Promise<TestStore> {
  const db = await freshDatabase();
  const helperRole = `${db.name}_helper`;
  helperRoles.set(db.url, helperRole);
  const configPath = writeConfig(db.url, extraConfig);
  // LOGIN: the test server trusts local connections, so the role needs no password.
  const migrated = await runPlexer(['db', 'migrate', '--helper-role', helperRole, '--login'], { configPath });
  if (migrated.code !== 0) throw new Error(`plexer db migrate failed: ${migrated.stderr}`);
  const sql = new pg.Pool({ connectionString: db.url, options: '-c search_path=plexer', max: 3 });
  // Dropping the database at close terminates idle connections; that is expected, not a test failure.
  sql.on('error', () => undefined);
  return {
    db,
    configPath,
    sql,
    helperRole,
    async close() {
      await sql.end();
      await db.drop();
      helperRoles.delete(db.url);
      // Its grants went with the database, so nothing holds the role any more.
      const server = new pg.Client({ connectionString: inject('pgUrl') });
      await server.connect();
      await server.query(`DROP ROLE IF EXISTS ${helperRole}`).finally(() => server.end());
    },
  };
}

export interface RunResult {
  code: number | null;
  stdout: string;
  stderr: string;
}

export function runPlexer(
  args: string[],
  opts: { configPath?: string; input?: string | Buffer; env?: NodeJS.ProcessEnv } = {},
): Promise<RunResult> {
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, [PLEXER_BIN, ...args, ...(opts.configPath ? ['--config', opts.configPath] : [])], {
      env: opts.env ?? {},
      cwd: '/',
    });
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (d) => (stdout += d));
    child.stderr.on('data', (d) => (stderr += d));
    child.on('error', reject);
    child.on('close', (code) => resolve({ code, stdout, stderr }));
    child.stdin.on('error', () => undefined);
    if (opts.input !== undefined) child.stdin.end(opts.input);
    else child.stdin.end();
  });
}

// How many times a helper's log says its LISTEN is in place (src/store/listener.ts); a change made after the
// n-th line is heard by that connection.
export const listeningLines = (log: string): number => log.match(/ info: listening for changes channel=/g)?.length ?? 0;

// Maps not yet exited; one exit handler for all of them (one per map passes Node's listener warning limit).
const liveMaps = new Set<ChildProcessWithoutNullStreams>();
process.once('exit', () => {
  for (const child of liveMaps) if (child.exitCode === null) child.kill('SIGKILL');
});

// A RewriteMap client: writes keys, reads answer lines, as mod_rewrite does.
export class MapProcess {
  readonly child: ChildProcessWithoutNullStreams;
  private buffered = '';
  private lines: string[] = [];
  private waiters: Array<(line: string) => void> = [];
  stderr = '';

  constructor(kind: string, configPath: string) {
    this.child = spawn(process.execPath, [PLEXER_BIN, 'map', kind, '--config', configPath], { env: {}, cwd: '/' });
    // A test that fails before close() must not leave its map behind.
    const child = this.child;
    liveMaps.add(child);
    child.once('exit', () => liveMaps.delete(child));
    this.child.stdout.setEncoding('latin1');
    this.child.stdout.on('data', (chunk: string) => {
      this.buffered += chunk;
      let nl: number;
      while ((nl = this.buffered.indexOf('\n')) !== -1) {
        const line = this.buffered.slice(0, nl);
        this.buffered = this.buffered.slice(nl + 1);
        const waiter = this.waiters.shift();
        if (waiter) waiter(line);
        else this.lines.push(line);
      }
    });
    this.child.stderr.on('data', (d) => (this.stderr += d));
  }

  nextLine(timeoutMs = 5_000): Promise<string> {
    const ready = this.lines.shift();
    if (ready !== undefined) return Promise.resolve(ready);
    return new Promise((resolve, reject) => {
      const waiter = (line: string) => {
        clearTimeout(timer);
        resolve(line);
      };
      const timer = setTimeout(() => {
        // A reader that gave up must not swallow the line that comes later: it belongs to the next reader.
        const index = this.waiters.indexOf(waiter);
        if (index !== -1) this.waiters.splice(index, 1);
        reject(new Error(`no answer line within ${timeoutMs} ms; stderr: ${this.stderr}`));
      }, timeoutMs);
      this.waiters.push(waiter);
    });
  }

  // Until the map's LISTEN has been in place `times` times since it started (each reconnection is one more).
  async listening(times = 1, timeoutMs = 5_000): Promise<void> {
    await waitFor(() => listeningLines(this.stderr) >= times, timeoutMs, `the map's LISTEN in place (${times}×)`);
  }

  // Answer lines received and not yet read.
  get unreadLines(): number {
    return this.lines.length;
  }

  write(data: string | Buffer): void {
    this.child.stdin.write(data);
  }

  async ask(key: string): Promise<string> {
    this.write(key + '\n');
    return this.nextLine();
  }

  async askMany(keys: string[]): Promise<string[]> {
    this.write(keys.map((k) => k + '\n').join(''));
    const answers: string[] = [];
    for (let i = 0; i < keys.length; i++) answers.push(await this.nextLine());
    return answers;
  }

  // Closes stdin as Apache does when it stops, and returns the exit code.
  close(): Promise<number | null> {
    return new Promise((resolve) => {
      if (this.child.exitCode !== null) return resolve(this.child.exitCode);
      this.child.once('exit', (code) => resolve(code));
      this.child.stdin.end();
    });
  }
}

// The answer line the map writes for `key`: the mark, the key, "=", then the value ("" for no value).
export const answerLine = (key: string, value: string | null): string => `${ANSWER_MARK}${key}=${value ?? ''}`;

// Polls until the map answers `key=expected` for `key` (expected "" or null: no value); returns the elapsed
// milliseconds.
export async function waitForAnswer(map: MapProcess, key: string, expected: string | null, limitMs = 3_000): Promise<number> {
  const start = performance.now();
  let answer = '';
  await waitFor(
    async () => (answer = await map.ask(key)) === answerLine(key, expected),
    limitMs,
    () => `the map to answer "${answerLine(key, expected)}" (still "${answer}")`,
    5,
  );
  return performance.now() - start;
}
