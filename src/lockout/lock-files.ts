// Lockouts as empty files that Apache can test per request without asking anyone: the generated config
// refuses a request whose user, address or pair has one (`Require expr "!-f …"`, see lockFileChecks), so a
// user locked by failures that mod_authn_socache refused itself (plexer never saw the password) is refused
// even when the cache would accept the right password. One stat() per file per request, no lock, no helper.
//
//   user:NAME       DIR/user/NAME
//   ip:ADDR         DIR/ip/ADDR
//   pair:NAME/ADDR  DIR/pair/ADDR/NAME
// Only a valid user name and a real IP literal become a path component, so no subject, however it was
// written into login_failures, can name a file outside DIR.
import { chmodSync, chownSync, lstatSync, mkdirSync, readdirSync, rmSync, statfsSync, writeFileSync, rmdirSync } from 'node:fs';
import { FileError } from '../errors.js';
import { isIP } from 'node:net';
import { join, resolve } from 'node:path';
import { isUserName } from '../names.js';

// On tmpfs on Debian (render/options.ts lockDir says why it must be), reachable only through root's directories.
export const DEFAULT_LOCK_DIR = '/run/plexer/locks';

// The socket of the refusal page (refusal-page.ts), in the lock directory: the logger owns it, Apache's user can
// reach it, and lock files live only in its subdirectories.
export const REFUSAL_SOCKET = 'refused.sock';

// statfs(2) f_type of tmpfs and ramfs. Lock files belong on one: each 401 waits for its file to be made, and on a
// journaled file system that can wait behind other processes' fsyncs (render/options.ts lockDir).
const MEMORY_FILE_SYSTEMS = new Set([0x01021994, 0x858458f6]);
// What to do about a lock directory that is not on tmpfs, for the logger's warning and doctor's: one fix, which
// for the default directory (tmpfs on a stock Debian, but not in every container) is a tmpfs there.
export function tmpfsAdvice(dir: string): string {
  return dir === DEFAULT_LOCK_DIR
    ? `mount a tmpfs on ${DEFAULT_LOCK_DIR} (or on /run, as Debian does), or give another directory on tmpfs with plexer apache config --lock-dir, e.g. /dev/shm/plexer-locks`
    : `give one on tmpfs with plexer apache config --lock-dir, e.g. ${DEFAULT_LOCK_DIR}`;
}

export function isOnTmpfs(dir: string): boolean {
  try {
    return MEMORY_FILE_SYSTEMS.has(statfsSync(dir).type);
  } catch {
    return false;
  }
}

// As root, before the logger drops to Apache's user (uid): DIR made, or taken over, where nobody but root and that
// user can have put anything in its way. Root follows symbolic links: a link planted in a directory others may
// write would hand any directory to Apache's user, and a directory of theirs would let them plant or remove lock
// files, or answer on refused.sock (which receives every refused Authorization header). So every directory above
// DIR must be a real directory of root's that others cannot write (or sticky, as /tmp and /dev/shm: there they
// cannot remove or rename what root made), and DIR, if it exists, a real directory of root's or of that user's.
export function prepareLockDir(dir: string, uid: number): void {
  const parts = resolve(dir)
    .split('/')
    .filter((part) => part !== '');
  let path = '';
  for (const [i, part] of parts.entries()) {
    path += `/${part}`;
    try {
      mkdirSync(path, { mode: 0o711 });
    } catch (error) {
      if ((error as NodeJS.ErrnoException).code !== 'EEXIST') throw error;
    }
    const found = lstatSync(path);
    const refuse = (why: string) =>
      new FileError(`refusing the lock directory ${dir}: ${path} ${why}; use a directory only root can reach, such as ${DEFAULT_LOCK_DIR}`);
    if (!found.isDirectory()) throw refuse('is not a directory (a symbolic link?)');
    if (i === parts.length - 1) {
      if (found.uid !== 0 && found.uid !== uid) throw refuse(`belongs to uid ${found.uid}`);
    } else if (found.uid !== 0) {
      throw refuse(`belongs to uid ${found.uid}, not root`);
    } else if ((found.mode & 0o022) !== 0 && (found.mode & 0o1000) === 0) {
      throw refuse('may be written by others');
    }
  }
  chmodSync(dir, 0o711);
  chownSync(dir, uid, -1);
}

export function lockFileOf(dir: string, subject: string): string | undefined {
  const colon = subject.indexOf(':');
  const kind = subject.slice(0, colon);
  const rest = subject.slice(colon + 1);
  if (kind === 'user') return isUserName(rest) ? join(dir, 'user', rest) : undefined;
  if (kind === 'ip') return isIP(rest) ? join(dir, 'ip', rest) : undefined;
  if (kind === 'pair' || kind === 'known') {
    const slash = rest.indexOf('/');
    const user = rest.slice(0, slash);
    const address = rest.slice(slash + 1);
    return slash > 0 && isUserName(user) && isIP(address) ? join(dir, kind, address, user) : undefined;
  }
  return undefined;
}

// The expression the generated config tests: true when none of the request's lock files exists.
// The lock file of the request's user, address or pair, as Apache's expressions and RewriteCond name it; known:
// the file saying the user has logged in from the request's address.
export function lockFilePath(dir: string, kind: 'user' | 'ip' | 'pair' | 'known'): string {
  return {
    user: `${dir}/user/%{REMOTE_USER}`,
    ip: `${dir}/ip/%{REMOTE_ADDR}`,
    pair: `${dir}/pair/%{REMOTE_ADDR}/%{REMOTE_USER}`,
    known: `${dir}/known/%{REMOTE_ADDR}/%{REMOTE_USER}`,
  }[kind];
}

// The name locked from everywhere does not hold at an address she has logged in from (migration 009).
export function lockFileChecks(dir: string): string {
  const file = (kind: 'user' | 'ip' | 'pair' | 'known') => `'${lockFilePath(dir, kind)}'`;
  return `(!-f ${file('user')} || -f ${file('known')}) && !-f ${file('ip')} && !-f ${file('pair')}`;
}

// The files in a lock directory, as this process keeps them: the directory is read once, when it is taken over
// (what an earlier logger left) and again now and then (reread), and otherwise every change is made here, so
// keeping it in step with the lockouts costs a set difference, not a walk of the directory every second (which
// took 36 ms at 1,000 files and 1.5 s at 50,000, on tmpfs).
export class LockDirectory {
  private present: Set<string>;
  // lockFileOf's answers (checking a name and an address each time is most of a sync's cost); emptied when it
  // outgrows the lockouts it serves.
  private readonly files = new Map<string, string | undefined>();

  constructor(readonly dir: string) {
    this.present = new Set(listFiles(dir));
  }

  // Reads the directory again: at a graceful reload the logger being replaced may still write a file or two after
  // this one has read it, which this one must also remove when its lockout ends (the caller does it now and then).
  reread(): void {
    this.present = new Set(listFiles(this.dir));
  }

  get size(): number {
    return this.present.size;
  }

  private fileOf(subject: string): string | undefined {
    if (this.files.has(subject)) return this.files.get(subject);
    if (this.files.size > 2 * this.present.size + 10_000) this.files.clear();
    const file = lockFileOf(this.dir, subject);
    this.files.set(subject, file);
    return file;
  }

  // Makes the files exactly those of `subjects` (the lockouts in force, and the addresses users are known at);
  // returns how many it changed. A known address gets a file only while its user's name is locked: it matters
  // only then, and every user's addresses would be far more files to keep.
  sync(subjects: Iterable<string>): number {
    const all = [...subjects];
    const lockedUsers = new Set(all.filter((s) => s.startsWith('user:')).map((s) => s.slice('user:'.length)));
    const wanted = new Set<string>();
    for (const subject of all) {
      if (subject.startsWith('known:') && !lockedUsers.has(subject.slice('known:'.length, subject.indexOf('/')))) continue;
      const file = this.fileOf(subject);
      if (file !== undefined) wanted.add(file);
    }
    let changed = 0;
    for (const file of wanted) {
      if (this.present.has(file)) continue;
      createFile(file);
      this.present.add(file);
      changed++;
    }
    for (const file of this.present) {
      if (wanted.has(file)) continue;
      rmSync(file, { force: true });
      this.present.delete(file);
      changed++;
      // Its address's directory goes with its last file.
      if (/\/(pair|known)\/[^/]+\/[^/]+$/.test(file)) {
        try {
          rmdirSync(join(file, '..'));
        } catch {
          // Not empty: still holds a file.
        }
      }
    }
    return changed;
  }

  // One lockout's file, at once (the next sync keeps it while the lockout holds).
  write(subject: string): void {
    const file = this.fileOf(subject);
    if (file === undefined) return;
    createFile(file);
    this.present.add(file);
  }
}

function createFile(file: string): void {
  mkdirSync(join(file, '..'), { recursive: true, mode: 0o711 });
  writeFileSync(file, '', { mode: 0o644 });
}

function listFiles(dir: string): string[] {
  const files: string[] = [];
  const walk = (path: string) => {
    for (const entry of readdirSync(path, { withFileTypes: true })) {
      const full = join(path, entry.name);
      if (entry.isDirectory()) walk(full);
      else files.push(full);
    }
  };
  for (const kind of ['user', 'ip', 'pair', 'known']) {
    try {
      walk(join(dir, kind));
    } catch {
      // Not made yet.
    }
  }
  return files;
}
