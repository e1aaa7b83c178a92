// A refusal `plexer authn` gave without a verdict — its time limit reached (bcrypt waiting for a CPU on a busy
// machine), the store unreachable — is answered 401 all the same (mod_authnz_external knows no "try again"), but
// it is no guess: the password was never compared, so nothing was learnt and nothing may be counted. Otherwise a
// burst of good logins on a loaded machine, or a stopped database, would lock out the users and their address
// (an office behind one NAT). authn (Apache's user) leaves an empty file DIR/excused/ADDRESS/NAME in the lock
// directory before it exits; `plexer lockout` takes it when that 401 reaches it (page or log line) and counts
// nothing. Only a valid user name and an IP literal become a path component (as for lock files). Tenants cannot
// write there (the directory is Apache's user's), and an excuse older than EXCUSE_LIFE_MS counts for nothing.
import { mkdirSync, readdirSync, rmdirSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { isIP } from 'node:net';
import { join } from 'node:path';
import { isUserName } from '../names.js';

const EXCUSED = 'excused';
// A 401 reaches the lockout within milliseconds of authn's exit; an excuse no 401 came for is swept after this.
export const EXCUSE_LIFE_MS = 60_000;

function excuseFile(lockDir: string, user: string, address: string): string | undefined {
  return isUserName(user) && isIP(address) !== 0 ? join(lockDir, EXCUSED, address, user) : undefined;
}

/** authn: the refusal it is about to give for USER from ADDRESS has no verdict. Never throws. */
export function leaveExcuse(lockDir: string, user: string, address: string): void {
  const file = excuseFile(lockDir, user, address);
  if (file === undefined) return;
  try {
    mkdirSync(join(lockDir, EXCUSED, address), { recursive: true, mode: 0o700 });
    writeFileSync(file, '', { mode: 0o600 });
  } catch {
    // No lock directory (the lockout not started yet): the 401 is counted, as before excuses existed.
  }
}

/** The lockout: whether this 401 was excused (the excuse is used up). */
export function takeExcuse(lockDir: string, user: string, address: string, now = Date.now()): boolean {
  const file = excuseFile(lockDir, user, address);
  if (file === undefined) return false;
  try {
    const left = statSync(file).mtimeMs;
    rmSync(file, { force: true });
    return now - left <= EXCUSE_LIFE_MS;
  } catch {
    return false;
  }
}

/** The lockout, now and then: excuses no 401 came for. */
export function sweepExcuses(lockDir: string, now = Date.now()): void {
  const root = join(lockDir, EXCUSED);
  let addresses: string[];
  try {
    addresses = readdirSync(root);
  } catch {
    return;
  }
  for (const address of addresses) {
    const dir = join(root, address);
    try {
      const users = readdirSync(dir);
      for (const user of users) if (now - statSync(join(dir, user)).mtimeMs > EXCUSE_LIFE_MS) rmSync(join(dir, user), { force: true });
      if (readdirSync(dir).length === 0) rmdirSync(dir);
    } catch {
      // Taken meanwhile.
    }
  }
}
