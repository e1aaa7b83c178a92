// `plexer lockout` makes a lock file while the guesser's next request is on its way: the directory must be on
// tmpfs (a file made on a journaled disk can wait tens of ms behind other processes' fsyncs). It says so at
// start when it is not, and is quiet when it is.
import { chmodSync, chownSync, existsSync, mkdirSync, mkdtempSync, rmSync, statSync, symlinkSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { freshStore, runPlexer, type TestStore } from '../helpers/plexer.js';

let store: TestStore;
const made: string[] = [];
const tempDir = (under: string) => {
  const dir = mkdtempSync(join(under, 'plexer-lock-dir-'));
  made.push(dir);
  return dir;
};

beforeAll(async () => {
  store = await freshStore();
});

afterAll(async () => {
  for (const dir of made) rmSync(dir, { recursive: true, force: true });
  await store.close();
});

// Apache closes the pipe when it stops: the logger then exits 0 (here: no line at all, stdin at EOF at once).
const lockout = (lockDir: string) => runPlexer(['lockout', '--lock-dir', lockDir], { configPath: store.configPath, input: '' });

describe('plexer lockout --lock-dir', () => {
  it('warns when the lock directory is on a disk, and says what to use instead', async () => {
    const dir = join(tempDir('/var/tmp'), 'locks');
    const run = await lockout(dir);
    expect(run.code, run.stderr).toBe(0);
    expect(run.stderr).toMatch(
      /lockout warn: the lock directory is not on tmpfs: .*give one on tmpfs with plexer apache config --lock-dir, e\.g\. \/run\/plexer\/locks dir=\/var\/tmp\/plexer-lock-dir-\w+\/locks/,
    );
    // Made by root, then handed to Apache's user, which the logger runs as.
    expect(existsSync(dir)).toBe(true);
    expect(statSync(dir).mode & 0o777).toBe(0o711);
  });

  // Root follows symbolic links and would hand the target to www-data; a directory others may write, or one of
  // theirs, would let them plant or remove lock files or answer on refused.sock.
  it('refuses a lock directory anyone but root could have put in its way, and touches nothing', async () => {
    const base = tempDir('/dev/shm');
    chmodSync(base, 0o711);
    const target = join(base, 'target');
    mkdirSync(target, { mode: 0o755 });
    symlinkSync(target, join(base, 'link'));
    const open = join(base, 'open');
    mkdirSync(open);
    chmodSync(open, 0o777);
    const theirs = join(base, 'theirs');
    mkdirSync(theirs);
    chownSync(theirs, 65534, 65534);
    for (const [dir, why] of [
      [join(base, 'link'), /link\S*: is not a directory|link is not a directory/],
      [join(base, 'link', 'locks'), /link is not a directory/],
      [join(open, 'locks'), /open may be written by others/],
      [theirs, /theirs belongs to uid 65534/],
    ] as const) {
      const run = await lockout(dir);
      expect(run.code, `${dir}: ${run.stderr}`).not.toBe(0);
      expect(run.stderr).toMatch(/refusing the lock directory/);
      expect(run.stderr).toMatch(why);
    }
    expect([statSync(target).uid, statSync(target).mode & 0o777]).toEqual([0, 0o755]);
    // Nothing is made below a directory that is refused.
    expect(existsSync(join(open, 'locks'))).toBe(false);
  });

  it('is quiet on tmpfs', async () => {
    const run = await lockout(join(tempDir('/dev/shm'), 'locks'));
    expect(run.code, run.stderr).toBe(0);
    expect(run.stderr).toMatch(/lockout info: counting refused logins/);
    expect(run.stderr).not.toMatch(/not on tmpfs/);
  });
});
