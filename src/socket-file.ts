// A unix socket a root helper listens on for one group of callers (Apache's workers): made root's alone, then
// opened to root:GID with MODE, so nobody else can connect in between and keep the connection; a stale socket
// there (a killed helper's) is replaced, anything else refused. Removed on the way out only if it is still this
// process's (a graceful reload's new helper may already listen at the same path).
import { chmodSync, chownSync, lstatSync, rmSync } from 'node:fs';
import type { Server } from 'node:net';
import { UsageError } from './errors.js';

// The socket's inode, for removeIfOwn.
export async function listenOnPath(server: Server, path: string, gid: number, mode: number): Promise<number> {
  try {
    const existing = lstatSync(path);
    if (!existing.isSocket()) throw new UsageError(`${path} exists and is not a socket; move it away`);
    rmSync(path);
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code !== 'ENOENT') throw error;
  }
  const umask = process.umask(0o177);
  try {
    await new Promise<void>((resolve, reject) => {
      server.once('error', reject);
      server.listen(path, () => resolve());
    });
  } finally {
    process.umask(umask);
  }
  chownSync(path, 0, gid);
  chmodSync(path, mode);
  return lstatSync(path).ino;
}

export function removeIfOwn(path: string, inode: number): void {
  try {
    if (lstatSync(path).ino === inode) rmSync(path);
  } catch {
    // gone already
  }
}
