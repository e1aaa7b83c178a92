import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { freshStore, runPlexer, type TestStore } from '../helpers/plexer.js';

let store: TestStore;
const authz = (input: string) =>
  runPlexer(['authz'], { configPath: store.configPath, input, env: { PATH: '/usr/bin:/bin', AUTHTYPE: 'GROUP' } });
const cli = (...args: string[]) => runPlexer(args, { configPath: store.configPath, input: 'pw\n' });

beforeAll(async () => {
  store = await freshStore();
  await cli('group', 'add', 'tenant1');
  await cli('user', 'add', 'alice', '--group', 'tenant1', '--password-stdin');
  await cli('user', 'add', 'bob', '--group', 'tenant1', '--password-stdin');
  await cli('user', 'grant', 'alice', 'admins');
  await cli('user', 'grant', 'bob', 'staff');
});

afterAll(() => store.close());

describe('plexer authz (GroupExternal)', () => {
  it('accepts a user holding any of the listed roles', async () => {
    expect((await authz('alice\nadmins\n')).code).toBe(0);
    expect((await authz('alice\nstaff admins\n')).code).toBe(0);
    expect((await authz('bob\nadmins\n')).code).toBe(15);
    expect((await authz('nobody\nadmins\n')).code).toBe(15);
  });

  it('sees revocations and disabled users at once', async () => {
    expect((await cli('user', 'revoke', 'bob', 'staff')).code).toBe(0);
    expect((await authz('bob\nstaff\n')).code).toBe(15);
    expect((await cli('user', 'revoke', 'bob', 'staff')).code).toBe(1);
    await cli('user', 'disable', 'alice');
    expect((await authz('alice\nadmins\n')).code).toBe(15);
    await cli('user', 'enable', 'alice');
    expect((await authz('alice\nadmins\n')).code).toBe(0);
  });

  it('refuses malformed input', async () => {
    expect((await authz('alice\n\n')).code).toBe(10);
    expect((await authz('alice\nadm;ins\n')).code).toBe(10);
    expect((await authz('alice')).code).toBe(10);
  });
});
