// Every file plexer writes for someone else to read (plexer.conf, the session key, Apache's config, the dbm
// maps) goes through here, because the directories they live in may be writable or traversable by less trusted
// users (a tenant's daemon, www-data) and readers may open the file at any moment:
//   - the temp file gets an unpredictable name and is created with O_CREAT|O_EXCL (flag 'wx'), which fails on
//     any existing name, a planted symlink included, instead of following it and writing where it points;
//   - it is created 0600 and only gets its final owner and mode once complete, so nobody can open it early and
//     keep a descriptor to content meant for someone else;
//   - it is fsynced and renamed over the target (rename replaces a symlink at the target, it never follows it),
//     and the directory is fsynced, so a reader sees the old file or the new one, never a half-written one.
import { randomBytes } from 'node:crypto';
import {
  closeSync,
  fchmodSync,
  fchownSync,
  fsyncSync,
  futimesSync,
  linkSync,
  mkdtempSync,
  openSync,
  renameSync,
  rmSync,
  unlinkSync,
  writeSync,
} from 'node:fs';
import { basename, dirname, join } from 'node:path';
import { coerceError, FileError } from './errors.js';

export class FileExistsError extends FileError {}

export interface Owner {
  uid: number;
  gid: number;
}

export interface AtomicWriteOptions {
  // The final permission bits, applied with fchmod (the umask does not reduce them).
  mode: number;
  // The final owner. Only root can give a file away; a caller that is not root passes none.
  owner?: Owner;
  // Never replace an existing file (link() instead of rename(): fails with EEXIST, never follows a symlink).
  // For secrets that must stay the same once something has read them, such as the session key.
  exclusive?: boolean;
  // The file's modification time, set before it takes the name. Apache's txt: and dbm: maps notice a new file by
  // its mtime alone, and the kernel stamps files with a clock that moves every few milliseconds: two versions
  // written within one tick would look the same to them.
  mtime?: Date;
}

// A name in the same directory (rename must not cross file systems) that no one can guess in advance.
export function tempPathFor(path: string): string {
  return join(dirname(path), `.${basename(path)}.${randomBytes(12).toString('hex')}.tmp`);
}

export function writeFileAtomic(path: string, data: string | Uint8Array, options: AtomicWriteOptions): void {
  const temp = tempPathFor(path);
  let fd: number;
  try {
    fd = openSync(temp, 'wx', 0o600);
  } catch (error) {
    throw new FileError(`cannot create a temporary file next to ${path}: ${coerceError(error).message}`);
  }
  try {
    try {
      const buffer = typeof data === 'string' ? Buffer.from(data) : data;
      for (let offset = 0; offset < buffer.length;) offset += writeSync(fd, buffer, offset, buffer.length - offset);
      if (options.owner) fchownSync(fd, options.owner.uid, options.owner.gid);
      // After fchown: changing the owner may clear mode bits.
      fchmodSync(fd, options.mode);
      if (options.mtime) futimesSync(fd, options.mtime, options.mtime);
      fsyncSync(fd);
    } finally {
      closeSync(fd);
    }
    if (options.exclusive) {
      linkSync(temp, path);
      unlinkSync(temp);
    } else {
      renameSync(temp, path);
    }
  } catch (error) {
    try {
      unlinkSync(temp);
    } catch {
      // already renamed or gone
    }
    if (options.exclusive && (error as NodeJS.ErrnoException).code === 'EEXIST') throw new FileExistsError(`${path} already exists`);
    throw new FileError(`cannot write ${path}: ${coerceError(error).message}`);
  }
  syncDirectory(dirname(path));
}

// A fresh 0700 directory with a random name inside DIR, for programs that write their output by name (httxt2dbm
// opens its output with O_CREAT and follows symlinks): inside a directory only we can enter, no one else can
// plant anything. mkdtemp creates it with mkdir, which never follows a symlink.
export function privateTempDir(dir: string, prefix: string): string {
  try {
    return mkdtempSync(join(dir, `.${prefix}.`));
  } catch (error) {
    throw new FileError(`cannot create a temporary directory in ${dir}: ${coerceError(error).message}`);
  }
}

export function removeTree(path: string): void {
  rmSync(path, { recursive: true, force: true });
}

export function syncDirectory(dir: string): void {
  const fd = openSync(dir, 'r');
  try {
    fsyncSync(fd);
  } finally {
    closeSync(fd);
  }
}
