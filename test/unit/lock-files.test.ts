import { existsSync, mkdtempSync, readdirSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { LockDirectory, lockFileOf } from '../../src/lockout/lock-files.js';
import { LockMirror } from '../../src/lockout/lock-mirror.js';

const dir = mkdtempSync(join(tmpdir(), 'plexer-locks-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

describe('lock files', () => {
  it('names one file per subject, and none for a subject that could leave the directory', () => {
    expect(lockFileOf(dir, 'user:alice')).toBe(join(dir, 'user', 'alice'));
    expect(lockFileOf(dir, 'ip:10.0.0.1')).toBe(join(dir, 'ip', '10.0.0.1'));
    expect(lockFileOf(dir, 'ip:fd00::1')).toBe(join(dir, 'ip', 'fd00::1'));
    expect(lockFileOf(dir, 'pair:a@b.c/10.0.0.1')).toBe(join(dir, 'pair', '10.0.0.1', 'a@b.c'));
    for (const bad of [
      'user:..',
      'user:../x',
      'ip:..',
      'ip:...',
      'pair:alice/..',
      'pair:../10.0.0.1',
      'pair:alice',
      'other:alice',
      'user:ali ce',
      'user:alice\r',
    ]) {
      expect(lockFileOf(dir, bad), bad).toBeUndefined();
    }
  });

  it('makes the files exactly those of the lockouts in force', () => {
    const files = new LockDirectory(dir);
    expect(files.sync(['user:alice', 'pair:bob/10.0.0.2', 'ip:10.0.0.3', 'ip:..'])).toBe(3);
    expect(existsSync(join(dir, 'pair', '10.0.0.2', 'bob'))).toBe(true);
    expect(files.sync(['user:alice', 'pair:bob/10.0.0.2', 'ip:10.0.0.3'])).toBe(0);
    expect(files.sync(['user:alice'])).toBe(2);
    expect(existsSync(join(dir, 'pair', '10.0.0.2'))).toBe(false);
    expect(readdirSync(join(dir, 'user'))).toEqual(['alice']);
  });

  it("keeps a known address's file only while its user's name is locked", () => {
    const files = new LockDirectory(dir);
    files.sync(['known:carol/10.0.0.7', 'known:dan/10.0.0.8', 'user:dan']);
    expect(existsSync(join(dir, 'known', '10.0.0.7', 'carol'))).toBe(false);
    expect(existsSync(join(dir, 'known', '10.0.0.8', 'dan'))).toBe(true);
    files.sync(['known:dan/10.0.0.8']);
    expect(existsSync(join(dir, 'known', '10.0.0.8'))).toBe(false);
  });

  it('takes over what another process left, and sees it again after reread', () => {
    new LockDirectory(dir).sync(['user:erin']);
    const files = new LockDirectory(dir);
    // Made by another logger after this one read the directory (a graceful reload's overlap).
    new LockDirectory(dir).write('ip:10.0.0.9');
    expect(files.sync([])).toBe(1);
    expect(existsSync(join(dir, 'ip', '10.0.0.9'))).toBe(true);
    files.reread();
    expect(files.sync([])).toBe(1);
    expect(existsSync(join(dir, 'ip', '10.0.0.9'))).toBe(false);
  });
});

describe('the lockout mirror', () => {
  it('follows messages, expires entries by itself, and lets a message heard during the load win over it', () => {
    let now = 1_000;
    const mirror = new LockMirror(() => now);
    mirror.reset();
    expect(mirror.ready).toBe(false);
    mirror.apply('pair:alice/10.0.0.1 0'); // ended while the load ran
    mirror.apply('user:bob 5000');
    mirror.loaded([
      { subject: 'pair:alice/10.0.0.1', untilMs: 9_000 },
      { subject: 'ip:10.0.0.9', untilMs: 3_000 },
    ]);
    expect(mirror.ready).toBe(true);
    expect(mirror.locked(['pair:alice/10.0.0.1', 'user:bob', 'ip:10.0.0.9']).sort()).toEqual(['ip:10.0.0.9', 'user:bob']);
    now = 4_000;
    expect(mirror.lockedNow()).toEqual(['user:bob']);
    mirror.apply('user:bob 0');
    expect(mirror.lockedNow()).toEqual([]);
    mirror.apply('user:carol 9000');
    mirror.apply('*');
    expect(mirror.lockedNow()).toEqual([]);
  });
});
