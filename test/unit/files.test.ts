// writeFileAtomic: a symlink planted at any name the writer could use is never followed, the target keeps its
// content, and the final file has exactly the requested mode and owner.
import { execFileSync } from 'node:child_process';
import {
  existsSync,
  lstatSync,
  mkdirSync,
  mkdtempSync,
  readdirSync,
  readFileSync,
  readlinkSync,
  rmSync,
  statSync,
  symlinkSync,
  writeFileSync,
} from 'node:fs';
import { tmpdir } from 'node:os';
import { basename, join } from 'node:path';
import { afterEach, beforeEach, describe, expect, it, vi } from 'vitest';

// Lets a test make the "random" part of the temp name predictable, to plant a symlink exactly there.
const fixed = vi.hoisted(() => ({ bytes: null as Buffer | null }));
vi.mock('node:crypto', async (importOriginal) => {
  const original = await importOriginal<typeof import('node:crypto')>();
  return { ...original, randomBytes: (n: number) => fixed.bytes ?? original.randomBytes(n) };
});

const { FileExistsError, privateTempDir, tempPathFor, writeFileAtomic } = await import('../../src/files.js');
const { FileError } = await import('../../src/errors.js');

let dir: string;
let victim: string;

beforeEach(() => {
  dir = mkdtempSync(join(tmpdir(), 'plexer-files-'));
  // What an attacker would like overwritten (think /etc/shadow), outside the directory.
  victim = join(mkdtempSync(join(tmpdir(), 'plexer-victim-')), 'precious');
  writeFileSync(victim, 'precious content\n', { mode: 0o600 });
  fixed.bytes = null;
});

afterEach(() => {
  fixed.bytes = null;
  rmSync(dir, { recursive: true, force: true });
  rmSync(join(victim, '..'), { recursive: true, force: true });
});

const modeOf = (p: string) => statSync(p).mode & 0o7777;

describe('writeFileAtomic', () => {
  it('writes the content with exactly the requested mode, whatever the umask', () => {
    const old = process.umask(0o077);
    try {
      const target = join(dir, 'plexer.conf');
      writeFileAtomic(target, 'a = 1\n', { mode: 0o640 });
      expect(readFileSync(target, 'utf8')).toBe('a = 1\n');
      expect(modeOf(target)).toBe(0o640);
      writeFileAtomic(target, 'a = 2\n', { mode: 0o600 });
      expect(readFileSync(target, 'utf8')).toBe('a = 2\n');
      expect(modeOf(target)).toBe(0o600);
    } finally {
      process.umask(old);
    }
    expect(readdirSync(dir)).toEqual(['plexer.conf']);
  });

  it.skipIf(process.getuid?.() !== 0)('gives the file its owner before it appears under its name', () => {
    const target = join(dir, 'plexer.conf');
    const wwwData = Number(execFileSync('id', ['-g', 'www-data'], { encoding: 'utf8' }).trim());
    writeFileAtomic(target, 'x\n', { mode: 0o640, owner: { uid: 0, gid: wwwData } });
    const st = statSync(target);
    expect([st.uid, st.gid, st.mode & 0o777]).toEqual([0, wwwData, 0o640]);
  });

  it('never follows a symlink planted at the old predictable temp names', () => {
    const target = join(dir, 'httpd.conf');
    // What `plexer apache config --out` used to write through, and sync's old names.
    for (const name of [`${basename(target)}.tmp`, `.${basename(target)}.tmp`, `.${basename(target)}.${process.pid}.1.tmp`]) {
      symlinkSync(victim, join(dir, name));
    }
    writeFileAtomic(target, 'new config\n', { mode: 0o600 });
    expect(readFileSync(target, 'utf8')).toBe('new config\n');
    expect(readFileSync(victim, 'utf8')).toBe('precious content\n');
    expect(modeOf(victim)).toBe(0o600);
  });

  it('never follows a symlink planted at the exact temp name it is about to use: refuses instead', () => {
    const target = join(dir, 'session.key');
    fixed.bytes = Buffer.alloc(12, 7);
    const temp = tempPathFor(target);
    expect(temp).toBe(join(dir, `.session.key.${'07'.repeat(12)}.tmp`));
    symlinkSync(victim, temp);
    expect(() => writeFileAtomic(target, 'secret\n', { mode: 0o600 })).toThrow(FileError);
    expect(readFileSync(victim, 'utf8')).toBe('precious content\n');
    expect(modeOf(victim)).toBe(0o600);
    expect(existsSync(target)).toBe(false);
    // The planted link is left alone (not ours to remove) and still points where it did.
    expect(readlinkSync(temp)).toBe(victim);
  });

  it('uses a different, unguessable temp name each time', () => {
    const names = new Set(Array.from({ length: 50 }, () => tempPathFor(join(dir, 'f'))));
    expect(names.size).toBe(50);
    for (const name of names) expect(basename(name)).toMatch(/^\.f\.[0-9a-f]{24}\.tmp$/);
  });

  it('replaces a symlink at the target itself with a regular file, leaving what it pointed to untouched', () => {
    const target = join(dir, 'plexer.conf');
    symlinkSync(victim, target);
    writeFileAtomic(target, 'mine\n', { mode: 0o640 });
    expect(lstatSync(target).isSymbolicLink()).toBe(false);
    expect(readFileSync(target, 'utf8')).toBe('mine\n');
    expect(readFileSync(victim, 'utf8')).toBe('precious content\n');
    expect(modeOf(target)).toBe(0o640);
  });

  it('exclusive: never replaces an existing file nor a symlink at the target', () => {
    const target = join(dir, 'session.key');
    writeFileSync(target, 'first\n', { mode: 0o600 });
    expect(() => writeFileAtomic(target, 'second\n', { mode: 0o600, exclusive: true })).toThrow(FileExistsError);
    expect(readFileSync(target, 'utf8')).toBe('first\n');
    const linked = join(dir, 'linked.key');
    symlinkSync(victim, linked);
    expect(() => writeFileAtomic(linked, 'second\n', { mode: 0o600, exclusive: true })).toThrow(FileExistsError);
    expect(readFileSync(victim, 'utf8')).toBe('precious content\n');
    writeFileAtomic(join(dir, 'fresh.key'), 'k\n', { mode: 0o600, exclusive: true });
    expect(modeOf(join(dir, 'fresh.key'))).toBe(0o600);
    expect(readdirSync(dir).filter((n) => n.endsWith('.tmp'))).toEqual([]);
  });

  it('fails with an error naming the file, and leaves no temp file behind', () => {
    mkdirSync(join(dir, 'sub'));
    writeFileSync(join(dir, 'sub', 'file'), 'x');
    expect(() => writeFileAtomic(join(dir, 'sub', 'file', 'below'), 'x', { mode: 0o600 })).toThrow(/next to .*sub\/file\/below/);
    // rename over a directory fails after the temp file was written: it is removed again.
    mkdirSync(join(dir, 'a-directory'));
    expect(() => writeFileAtomic(join(dir, 'a-directory'), 'x', { mode: 0o600 })).toThrow(/cannot write .*a-directory/);
    expect(readdirSync(dir).sort()).toEqual(['a-directory', 'sub']);
  });
});

describe('privateTempDir', () => {
  it('is a fresh 0700 directory with a random name, never a planted symlink', () => {
    symlinkSync(join(victim, '..'), join(dir, '.sync.1.XXXXXX'));
    const a = privateTempDir(dir, 'sync.1');
    const b = privateTempDir(dir, 'sync.1');
    expect(a).not.toBe(b);
    for (const d of [a, b]) {
      const st = lstatSync(d);
      expect(st.isDirectory()).toBe(true);
      expect(st.mode & 0o777).toBe(0o700);
      expect(basename(d)).toMatch(/^\.sync\.1\.[A-Za-z0-9]{6}$/);
    }
  });
});
