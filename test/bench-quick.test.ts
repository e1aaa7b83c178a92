// The benchmark's --quick mode as a smoke test: every variant (txt:, dbd:, fastdbd:, Python prg:, plexer map,
// dbm: with plexer sync, every password provider) starts and serves correct answers. It checks answers only,
// never speed, so machine noise cannot fail it; figures come from `npm run bench`.
import { spawn } from 'node:child_process';
import { describe, expect, it } from 'vitest';
import { REPO_ROOT } from './helpers/plexer.js';

describe('npm run bench -- --quick', () => {
  it('runs every variant and gets only correct answers', async () => {
    const child = spawn(process.execPath, ['dist-bench/src/apache-bench.js', '--quick'], {
      cwd: REPO_ROOT,
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    let output = '';
    child.stdout.on('data', (d) => (output += d));
    child.stderr.on('data', (d) => (output += d));
    const code = await new Promise((resolve) => child.on('exit', resolve));
    if (code !== 0) console.log(output.slice(-4000));
    expect(code).toBe(0);
    expect(output).toMatch(/plexer map/);
    expect(output).toMatch(/dbm:/);
  }, 600_000);
});
