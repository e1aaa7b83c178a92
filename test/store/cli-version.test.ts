// `plexer --version`, and a packed tarball that carries what the launcher needs (dist/ is built by prepack).
import { execFileSync } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { REPO_ROOT, runPlexer } from '../helpers/plexer.js';

const pkg = JSON.parse(readFileSync(join(REPO_ROOT, 'package.json'), 'utf8')) as { version: string; scripts: Record<string, string> };

describe('plexer --version', () => {
  it('prints the package version and exits 0', async () => {
    for (const flag of ['--version', '-V']) {
      const r = await runPlexer([flag]);
      expect(r.code).toBe(0);
      expect(r.stdout.trim()).toBe(`plexer ${pkg.version}`);
    }
  });
});

describe('npm pack', () => {
  it('ships the launcher, the built code and the Apache side, and builds before packing', () => {
    expect(pkg.scripts.prepack).toMatch(/build/);
    // --ignore-scripts: the suite has built dist/ already; prepack would only build it again.
    const out = execFileSync('npm', ['pack', '--dry-run', '--json', '--ignore-scripts'], { cwd: REPO_ROOT, encoding: 'utf8' });
    const files = (JSON.parse(out) as Array<{ files: Array<{ path: string }> }>)[0]!.files.map((f) => f.path);
    // migrate.ts reads the SQL files from src/store/migrations at run time.
    for (const needed of [
      'bin/plexer',
      'dist/cli/main.js',
      'dist/cli/map.js',
      'apache/wsgi/plexer.wsgi',
      'package.json',
      'README.md',
      'src/store/migrations/001_schema.sql',
    ]) {
      expect(files, needed).toContain(needed);
    }
    // The operators' reference the README leads to ships beside it, in apache/.
    const linked = [...readFileSync(join(REPO_ROOT, 'README.md'), 'utf8').matchAll(/\]\((apache\/[A-Z]+\.md)\)/g)].map((m) => m[1]!);
    expect(linked.length).toBeGreaterThan(5);
    for (const doc of linked) expect(files, doc).toContain(doc);
    expect(
      files.filter(
        (f) => f.startsWith('test/') || (f.startsWith('src/') && !f.startsWith('src/store/migrations/')) || f.startsWith('.state/'),
      ),
    ).toEqual([]);
    // The benchmarks build apart (bench/tsconfig.json, into dist-bench/) and never ship.
    expect(files.filter((f) => /^(bench|dist-bench|dist\/bench)\//.test(f))).toEqual([]);
  });
});
