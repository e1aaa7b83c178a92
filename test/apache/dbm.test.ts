// The dbm: mode with the generated config: Apache reads GDBM maps that `plexer sync` keeps current; no prg:
// process. A move made with psql is served within a second; killing sync leaves routing as it was.
import { spawn, type ChildProcess } from 'node:child_process';
import { chmodSync, mkdirSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { seedTwoTenants, startTestFront, waitUntilServed, type TestFront } from '../helpers/front.js';
import { PLEXER_BIN, runPlexer } from '../helpers/plexer.js';

let t: TestFront;
let sync: ChildProcess;
let mapDir: string;

beforeAll(async () => {
  t = await startTestFront(
    async (cli) => {
      await seedTwoTenants(cli);
      await cli(['user', 'add', 'dave', '--group', 'none', '--password-stdin'], 'dave-pw\n');
    },
    {
      // The maps must exist before Apache starts: build them once, as an operator's pre-start step would.
      beforeStart: async (stateDir, configPath) => {
        mapDir = join(stateDir, 'maps');
        mkdirSync(mapDir);
        chmodSync(mapDir, 0o755);
        const once = await runPlexer(['sync', '--dir', mapDir, '--once'], { configPath });
        if (once.code !== 0) throw new Error(`sync --once failed: ${once.stderr}`);
        return { extra: { mapDir } };
      },
    },
  );
  sync = spawn(process.execPath, [PLEXER_BIN, 'sync', '--dir', mapDir, '--config', t.configPath], {
    env: {},
    stdio: ['ignore', 'ignore', 'pipe'],
  });
  await waitUntilServed(t, 'alice', 'alice-pw');
}, 120_000);

afterAll(async () => {
  if (sync.exitCode === null) sync.kill('SIGTERM');
  await t?.close();
});

describe('dbm: maps kept by plexer sync', () => {
  it('routes from the map files, with no prg: map process', async () => {
    expect((await t.get('/app/whoami', { user: 'bob', password: 'bob-pw' })).json().group).toBe('tenant2');
    expect((await t.get('/app/whoami', { user: 'dave', password: 'dave-pw' })).status).toBe(403);
    expect(t.front.httpd.errorLog()).not.toMatch(/map group/);
  });

  it('serves a move made with psql within a second', async () => {
    await t.store.sql.query(`UPDATE users SET daemon_group = 'tenant1' WHERE name = 'bob'`);
    const committed = performance.now();
    let group = '';
    while (group !== 'tenant1' && performance.now() - committed < 3_000) {
      group = (await t.get('/app/whoami', { user: 'bob', password: 'bob-pw' })).json().group;
    }
    const elapsed = performance.now() - committed;
    console.log(`dbm mode: psql move → first request served by the new group: ${elapsed.toFixed(0)} ms`);
    expect(group).toBe('tenant1');
    // Typically ~0.2 s (150 ms coalescing + one rebuild); the margin is for two suites sharing 2 busy cores.
    expect(elapsed).toBeLessThan(2_000);
  });

  it('keeps routing from the last files when sync is killed', async () => {
    sync.kill('SIGKILL');
    await new Promise((r) => sync.once('exit', r));
    await t.store.sql.query(`UPDATE users SET daemon_group = 'tenant2' WHERE name = 'alice'`);
    // A negative check: the 500 ms are the time a live sync would need to move her (about 0.2 s, above), and
    // nothing must happen in them.
    await new Promise((r) => setTimeout(r, 500));
    // Nobody rewrites the maps now: alice stays where the last file put her, and nobody gets an error.
    expect((await t.get('/app/whoami', { user: 'alice', password: 'alice-pw' })).json().group).toBe('tenant1');
    expect((await t.get('/app/whoami', { user: 'bob', password: 'bob-pw' })).json().group).toBe('tenant1');
  });
});
