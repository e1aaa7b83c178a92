import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { formatConfig } from '../../src/config.js';
import { freshStore, runPlexer, type TestStore } from '../helpers/plexer.js';

let store: TestStore;
const cli = (args: string[], input = 'pw\n') => runPlexer(args, { configPath: store.configPath, input });

beforeAll(async () => {
  store = await freshStore();
});
afterAll(() => store.close());

describe('plexer group and user commands', () => {
  it('manages groups with validation and clear exit codes', async () => {
    expect((await cli(['group', 'add', 'tenant1', '--settings', 'tenants.settings.t1', '--capacity', '2'])).code).toBe(0);
    expect((await cli(['group', 'add', 'tenant2', '--backend', 'unix:/run/plexer/t2.sock|fcgi://localhost/'])).code).toBe(0);
    const dup = await cli(['group', 'add', 'tenant1']);
    expect(dup.code).toBe(1);
    expect(dup.stderr).toMatch(/daemon group "tenant1" already exists/);
    expect((await cli(['group', 'add', 'Bad Name'])).code).toBe(2);
    expect((await cli(['group', 'add', 't3', '--settings', 'os; rm -rf'])).code).toBe(2);
    expect((await cli(['group', 'add', 't3', '--backend', 'http://x/ "evil'])).code).toBe(2);
    expect((await cli(['group', 'add', 't3', '--capacity', '-1'])).code).toBe(2);
    expect((await cli(['group', 'add'])).code).toBe(2);
    expect((await cli(['group', 'frobnicate', 'x'])).code).toBe(2);
    expect((await cli(['group', 'set', 'nosuch', '--disable'])).code).toBe(1);
    const list = JSON.parse((await cli(['group', 'list', '--json'])).stdout);
    expect(list.map((g: { name: string }) => g.name)).toEqual(['tenant1', 'tenant2']);
    expect(list[0]).toMatchObject({ settings_module: 'tenants.settings.t1', capacity: 2, enabled: true, users: 0 });
  });

  it('adds, moves, disables, lists and deletes users', async () => {
    expect((await cli(['user', 'add', 'alice', '--group', 'tenant1', '--password-stdin'])).code).toBe(0);
    expect((await cli(['user', 'add', 'alice', '--group', 'tenant1', '--password-stdin'])).code).toBe(1);
    expect((await cli(['user', 'add', 'bob', '--group', 'nosuch', '--password-stdin'])).code).toBe(1);
    expect((await cli(['user', 'add', 'bob', '--group', 'tenant2', '--password-stdin'], '\n')).code).toBe(1);
    expect((await cli(['user', 'add', 'bob', '--group', 'tenant2', '--password-stdin'], `${'x'.repeat(73)}\n`)).code).toBe(1);
    expect((await cli(['user', 'add', 'bob', '--group', 'tenant2'])).code).toBe(2);
    expect((await cli(['user', 'add', 'bob', '--group', 'tenant2', '--password-stdin'])).code).toBe(0);
    expect((await cli(['user', 'move', 'bob', '--group', 'tenant1'])).code).toBe(0);
    expect((await cli(['user', 'move', 'ghost', '--group', 'tenant1'])).code).toBe(1);
    expect((await cli(['user', 'disable', 'bob'])).code).toBe(0);
    expect((await cli(['user', 'grant', 'bob', 'staff'])).code).toBe(0);
    const users = JSON.parse((await cli(['user', 'list', '--group', 'tenant1', '--json'])).stdout);
    expect(users.map((u: { name: string; disabled: boolean; roles: string[] }) => [u.name, u.disabled, u.roles])).toEqual([
      ['alice', false, []],
      ['bob', true, ['staff']],
    ]);
    const text = (await cli(['user', 'list'])).stdout;
    expect(text).toMatch(
      /^NAME\s+GROUP\s+STATE\s+ROLES\s+LOCKED OUT\nalice\s+tenant1\s+enabled\s+-\s+-\nbob\s+tenant1\s+disabled\s+staff\s+-$/m,
    );
    expect((await cli(['group', 'del', 'tenant1'])).stderr).toMatch(/still has users/);
    expect((await cli(['user', 'del', 'bob'])).code).toBe(0);
    expect((await cli(['user', 'del', 'bob'])).code).toBe(1);
  });

  it('changes a password so only the new one verifies', async () => {
    expect((await cli(['user', 'passwd', 'alice', '--password-stdin'], 'new-secret\n')).code).toBe(0);
    const authn = (pw: string) => runPlexer(['authn'], { configPath: store.configPath, input: `alice\n${pw}\n` });
    expect((await authn('new-secret')).code).toBe(0);
    expect((await authn('pw')).code).toBe(12);
  });

  it('fills groups with "--group auto", fewest users first, and says when the pool is full', async () => {
    await cli(['group', 'set', 'tenant2', '--capacity', '2']);
    const placed: string[] = [];
    for (const name of ['u1', 'u2', 'u3']) {
      const result = await cli(['user', 'add', name, '--group', 'auto', '--password-stdin']);
      expect(result.code).toBe(0);
      placed.push(result.stdout.trim().split(' ').pop()!);
    }
    // tenant1 holds alice (1/2), tenant2 is empty (2 places): fewest first, ties by name.
    expect(placed).toEqual(['tenant2', 'tenant1', 'tenant2']);
    const full = await cli(['user', 'add', 'u4', '--group', 'auto', '--password-stdin']);
    expect(full.code).toBe(1);
    expect(full.stderr).toMatch(/no enabled daemon group has room/);
  });

  it('prints help for every command and exits 2 on unknown ones', async () => {
    for (const command of ['db', 'group', 'user', 'map', 'authn', 'authz']) {
      const result = await runPlexer([command, '--help']);
      expect(result.code, command).toBe(0);
      expect(result.stdout).toMatch(/Usage:\s+plexer /);
    }
    expect((await runPlexer(['--help'])).stdout).toMatch(/Commands:/);
    expect((await runPlexer(['frob'])).code).toBe(2);
    expect((await runPlexer(['user', 'list', '--bogus'])).code).toBe(2);
  });

  it('reports an unreachable database as a refusal with the target but no password', async () => {
    const { mkdtempSync, writeFileSync } = await import('node:fs');
    const dir = mkdtempSync('/tmp/plexer-down-');
    writeFileSync(`${dir}/plexer.conf`, formatConfig({ pg_host: dir, pg_port: 1, pg_password: 'Hunter2-secret' }));
    const result = await runPlexer(['user', 'list', '--config', `${dir}/plexer.conf`]);
    expect(result.code).toBe(1);
    expect(result.stderr).toMatch(/cannot reach PostgreSQL at host=/);
    expect(result.stderr).not.toContain('Hunter2-secret');
  });
});
