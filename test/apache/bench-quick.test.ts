// The benchmark's --quick mode as a smoke test: every variant (txt:, dbd:, fastdbd:, Python prg:, plexer map,
// dbm: with plexer sync, every password provider) starts and serves correct answers. It checks answers only,
// never speed, so machine noise cannot fail it; figures come from `npm run bench`.
import { describe, expect, it } from 'vitest';
import { runBenchScript } from '../helpers/bench-script.js';

describe('npm run bench -- --quick', () => {
  it('runs every variant and gets only correct answers', async () => {
    const { code, output } = await runBenchScript('apache-bench', ['--quick']);
    expect(code).toBe(0);
    expect(output).toMatch(/plexer map/);
    expect(output).toMatch(/dbm:/);
    expect(output).toMatch(/the default with `--login-cache --login-checker`.* — cold/);
  }, 600_000);
});
