// The files an operator installs beside plexer: the systemd units (checked by systemd's own verifier, and their
// plexer command lines by plexer's own option parser) and the standalone layout's logrotate file (accepted by
// logrotate, and a real rotation under a running Apache: the old lines in access.log.1, new ones in access.log).
import { spawnSync } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { seedTwoTenants, startTestFront, waitUntilServed, type TestFront } from '../helpers/front.js';
import { PLEXER_BIN, REPO_ROOT } from '../helpers/plexer.js';
import { waitFor } from '../helpers/wait.js';

const UNITS = ['apache/plexer-sync.service', 'apache/plexer-authd.service'];
const LOGROTATE = join(REPO_ROOT, 'apache/plexer.logrotate');
const tmp = mkdtempSync('/tmp/plexer-opfiles-');
let t: TestFront | undefined;

afterAll(async () => {
  await t?.close();
  rmSync(tmp, { recursive: true, force: true });
}, 60_000);

function run(command: string, args: string[]): { code: number | null; out: string } {
  const r = spawnSync(command, args, { encoding: 'utf8' });
  return { code: r.status, out: `${r.stdout}${r.stderr}` };
}

describe('systemd units', () => {
  for (const unit of UNITS) {
    it(`${unit}: systemd-analyze verify accepts it without a word`, () => {
      const r = run('systemd-analyze', ['verify', join(REPO_ROOT, unit)]);
      expect(r, r.out).toEqual({ code: 0, out: '' });
    });

    it(`${unit}: plexer accepts every command line in it`, () => {
      const text = readFileSync(join(REPO_ROOT, unit), 'utf8');
      const lines = [...text.matchAll(/^Exec\w+=-?\/usr\/bin\/node \/opt\/plexer\/bin\/plexer (.+)$/gm)].map((m) => m[1]!.split(/\s+/));
      expect(lines.length).toBeGreaterThan(0);
      for (const args of lines) {
        // --help after the options: the parser has checked every option name and value shape by then.
        const r = spawnSync(process.execPath, [PLEXER_BIN, ...args, '--help'], { encoding: 'utf8' });
        expect(r.status, `${args.join(' ')}\n${r.stderr}`).toBe(0);
      }
    });
  }
});

describe('apache/plexer.logrotate (standalone layout)', () => {
  it('logrotate -d accepts it', () => {
    const r = run('logrotate', ['-d', '-s', join(tmp, 'debug.state'), LOGROTATE]);
    expect(r.code, r.out).toBe(0);
    expect(r.out).toContain('rotating pattern: /var/lib/plexer/apache/*.log');
    expect(r.out.split('\n').filter((line) => /^error/i.test(line))).toEqual([]);
  });

  it("rotates a running Apache's logs: old lines stay in access.log.1, Apache reopens and writes new ones to access.log", async () => {
    t = await startTestFront(seedTwoTenants);
    await waitUntilServed(t, 'alice', 'alice-pw');
    const dir = t.front.apacheDir;
    const access = join(dir, 'access.log');
    await waitFor(() => readFileSync(access, 'utf8').includes(' alice '), 5_000, "alice's request in access.log");

    // The installed file with its directory moved to this Apache's (logrotate wants a root-owned, 0644 file).
    const conf = join(tmp, 'plexer');
    writeFileSync(conf, readFileSync(LOGROTATE, 'utf8').replaceAll('/var/lib/plexer/apache', dir), { mode: 0o644 });
    const r = run('logrotate', ['-f', '-s', join(tmp, 'state'), conf]);
    expect(r.code, r.out).toBe(0);
    expect(readFileSync(join(dir, 'access.log.1'), 'utf8')).toContain(' alice ');

    // After the graceful restart of the postrotate script, requests land in the new file.
    await waitFor(
      async () => {
        await t!.get('/app/whoami', { user: 'bob', password: 'bob-pw', fresh: true });
        return existsSync(access) && / bob \[.*\] 200 /.test(readFileSync(access, 'utf8'));
      },
      20_000,
      "bob's request in the new access.log",
    );
    expect(readFileSync(access, 'utf8')).not.toContain(' alice ');
  }, 120_000);
});
