// Writes the three RewriteMap files Apache reads with `dbm=gdbm:` — group.map (user → daemon group),
// settings.map (group → settings module), backend.map (user → backend) — from one consistent snapshot of the
// store. GDBM keeps a map in ONE file, so a rename() swaps it atomically (sdbm's .dir/.pag pair cannot be).
// Each file is produced by Debian's httxt2dbm inside a private temp directory in the same directory, fsynced,
// made 0640 root:www-data (who has which group is nobody else's business, tenants included) and renamed over the
// target: Apache (which stats the file on every lookup and reopens it when the mtime changes) only ever opens a
// complete map.
import { spawn } from 'node:child_process';
import { accessSync, constants, readdirSync, rmSync, statSync } from 'node:fs';
import { open, rename, unlink } from 'node:fs/promises';
import { join } from 'node:path';
import type pg from 'pg';
import { coerceError, ConfigError } from '../errors.js';
import { ANSWER_MARK } from '../protocol/rewrite-map.js';
import { privateTempDir, removeTree, tempPathFor, type Owner } from '../files.js';
import { APACHE_RUN_GROUP, groupId } from '../tenant-users.js';
import { fetchAllMapValues, type MapKind } from '../store/map-queries.js';

export const HTTXT2DBM = '/usr/sbin/httxt2dbm';
export const MAP_KINDS: readonly MapKind[] = ['group', 'settings', 'backend'];
// Renamed in this order: a group that just appeared is in settings.map before group.map sends users to it.
const RENAME_ORDER: readonly MapKind[] = ['settings', 'backend', 'group'];

export function mapFileName(kind: MapKind): string {
  return `${kind}.map`;
}

// Temp files of older versions (.group.map.PID.N.tmp) and today's private temp directories (.sync.PID.XXXXXX).
const TEMP_PATTERN = /^\.(?:(?:group|settings|backend)\.map\.(\d+)\.\d+\.tmp|sync\.(\d+)\.[A-Za-z0-9]{6})$/;
export const MAP_FILE_MODE = 0o640;

// Apache's workers read the maps through their group: www-data. Root gives the files to root:www-data; any
// other writer must hold www-data among its groups (e.g. run sync as www-data), else Apache could not read them.
export function mapFileOwner(): Owner | undefined {
  const gid = groupId(APACHE_RUN_GROUP);
  if (gid === null) throw new ConfigError(`group ${APACHE_RUN_GROUP} does not exist: is Debian's apache2 installed?`);
  if (process.getuid?.() === 0) return { uid: 0, gid };
  if (process.getgid?.() === gid || (process.getgroups?.() ?? []).includes(gid)) return { uid: -1, gid };
  throw new ConfigError(
    `plexer sync must run as root or with group ${APACHE_RUN_GROUP}: the maps are mode 0640 and Apache's workers read them through that group`,
  );
}

export interface RebuildResult {
  users: number;
  ms: number;
}

export interface RebuildDetails extends RebuildResult {
  groups: number;
  backends: number;
}

export interface RebuildOptions {
  httxt2dbm?: string;
}

export function checkHttxt2dbm(path = HTTXT2DBM): void {
  try {
    accessSync(path, constants.X_OK);
  } catch {
    throw new ConfigError(`${path} not found or not executable: install Debian's apache2-utils package (it provides httxt2dbm)`);
  }
}

// The directory must exist and take new files; checked by really creating one (root passes every access() test).
export async function checkMapDirectory(dir: string): Promise<void> {
  let isDirectory = false;
  try {
    isDirectory = statSync(dir).isDirectory();
  } catch (error) {
    throw new ConfigError(`map directory ${dir}: ${coerceError(error).message}`);
  }
  if (!isDirectory) throw new ConfigError(`map directory ${dir} is not a directory`);
  // Whoever else may write in it could replace a map file between two rebuilds (rename over it) and route any
  // user anywhere: only the directory's owner may, not its group or everyone, sticky or not.
  const found = statSync(dir);
  if ((found.mode & 0o022) !== 0 || (found.uid !== 0 && found.uid !== process.getuid?.())) {
    throw new ConfigError(
      `map directory ${dir} may be written by others (mode ${(found.mode & 0o7777).toString(8)}, owner uid ${found.uid}): give it to root (or the user running plexer sync) and chmod 755 it`,
    );
  }
  const probe = tempPathFor(join(dir, '.plexer-sync-probe'));
  try {
    const handle = await open(probe, 'wx', 0o600);
    await handle.close();
    await unlink(probe);
  } catch (error) {
    throw new ConfigError(`map directory ${dir} is not writable: ${coerceError(error).message}`);
  }
  // Exit 2 at start rather than a failed rebuild later.
  mapFileOwner();
}

// Temp files left by a sync that was killed mid-build. Only those of processes that no longer exist.
export function removeStaleTemps(dir: string): number {
  let removed = 0;
  for (const name of readdirSync(dir)) {
    const match = TEMP_PATTERN.exec(name);
    if (!match) continue;
    const pid = Number(match[1] ?? match[2]);
    if (pid !== process.pid && processExists(pid)) continue;
    try {
      rmSync(join(dir, name), { recursive: true });
      removed++;
    } catch {
      // gone already
    }
  }
  return removed;
}

function processExists(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (error) {
    return (error as NodeJS.ErrnoException).code === 'EPERM';
  }
}

// httxt2dbm reads "key value" per line, splits on whitespace and skips lines starting with '#'. The store's
// CHECK constraints already forbid such names and values; this is the last guard against a misread map.
function isSafeEntry(key: string, value: string): boolean {
  return key !== '' && value !== '' && !key.startsWith('#') && !/\s/.test(key) && !/\s/.test(value);
}

function mapText(entries: Array<[string, string]>): string {
  const lines: string[] = [];
  // The value names its key ("alice #alice=alpha"), as prg: answers do, so the same rules check both: a value
  // can only ever route the key it is stored under.
  for (const [key, value] of entries) if (isSafeEntry(key, value)) lines.push(`${key} ${ANSWER_MARK}${key}=${value}\n`);
  return lines.join('');
}

function runHttxt2dbm(binary: string, input: string, output: string): Promise<void> {
  return new Promise((resolve, reject) => {
    const child = spawn(binary, ['-f', 'GDBM', '-i', '-', '-o', output], {
      stdio: ['pipe', 'ignore', 'pipe'],
      env: { PATH: '/usr/bin:/bin' },
    });
    let stderr = '';
    child.stderr.setEncoding('utf8');
    child.stderr.on('data', (chunk: string) => (stderr = (stderr + chunk).slice(-2000)));
    child.stdin.on('error', () => undefined); // EPIPE when it dies early; the exit status tells why
    child.on('error', reject);
    child.on('close', (code, signal) => {
      if (code === 0) resolve();
      else reject(new Error(`httxt2dbm failed (${signal ?? `exit ${code}`}): ${stderr.trim() || 'no message'}`));
    });
    child.stdin.end(input);
  });
}

// Produces a complete, fsynced map file in TEMPDIR (ours, 0700, fresh); the caller renames it into place.
async function writeTemp(
  binary: string,
  tempDir: string,
  kind: MapKind,
  entries: Array<[string, string]>,
  owner: Owner | undefined,
): Promise<string> {
  // httxt2dbm opens its output by name, read-write-create, following symlinks and merging into an existing
  // file: hence a name in a directory no one else can enter, never one in the shared map directory.
  const temp = join(tempDir, mapFileName(kind));
  try {
    await runHttxt2dbm(binary, mapText(entries), temp);
    const handle = await open(temp, constants.O_RDWR | constants.O_NOFOLLOW);
    try {
      if (owner) await handle.chown(owner.uid, owner.gid);
      // Written with mode 0755 (APR's default); only Apache's workers read it, through their group.
      await handle.chmod(MAP_FILE_MODE);
      await handle.sync();
    } finally {
      await handle.close();
    }
    return temp;
  } catch (error) {
    await unlink(temp).catch(() => undefined);
    throw error;
  }
}

async function syncDirectory(dir: string): Promise<void> {
  const handle = await open(dir, 'r');
  try {
    await handle.sync();
  } finally {
    await handle.close();
  }
}

// Reads the three maps in ONE repeatable-read snapshot, so the files agree with each other.
export async function readSnapshot(client: pg.ClientBase): Promise<Record<MapKind, Array<[string, string]>>> {
  await client.query('BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY');
  try {
    const snapshot = {
      group: await fetchAllMapValues(client, 'group'),
      settings: await fetchAllMapValues(client, 'settings'),
      backend: await fetchAllMapValues(client, 'backend'),
    };
    await client.query('COMMIT');
    return snapshot;
  } catch (error) {
    await client.query('ROLLBACK').catch(() => undefined);
    throw error;
  }
}

export async function rebuildMapsDetailed(client: pg.ClientBase, dir: string, options: RebuildOptions = {}): Promise<RebuildDetails> {
  const started = performance.now();
  const binary = options.httxt2dbm ?? HTTXT2DBM;
  const snapshot = await readSnapshot(client);
  const owner = mapFileOwner();
  const tempDir = privateTempDir(dir, `sync.${process.pid}`);
  try {
    // The three files are built in parallel (one httxt2dbm each), then swapped in quick succession.
    const results = await Promise.allSettled(MAP_KINDS.map((kind) => writeTemp(binary, tempDir, kind, snapshot[kind], owner)));
    const temps = new Map<MapKind, string>();
    results.forEach((result, i) => result.status === 'fulfilled' && temps.set(MAP_KINDS[i]!, result.value));
    const failed = results.find((result): result is PromiseRejectedResult => result.status === 'rejected');
    // All or nothing: the old files stay, in agreement with each other (the temp directory goes below).
    if (failed) throw failed.reason;
    for (const kind of RENAME_ORDER) await rename(temps.get(kind)!, join(dir, mapFileName(kind)));
    await syncDirectory(dir);
  } finally {
    removeTree(tempDir);
  }
  return {
    users: snapshot.group.length,
    groups: snapshot.settings.length,
    backends: snapshot.backend.length,
    ms: Math.round(performance.now() - started),
  };
}

// For benchmarks and other callers: one full rebuild of DIR's three maps from the store.
export async function rebuildMaps(client: pg.ClientBase, dir: string): Promise<RebuildResult> {
  const { users, ms } = await rebuildMapsDetailed(client, dir);
  return { users, ms };
}
