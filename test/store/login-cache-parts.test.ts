// The login cache's parts on their own, against a real memcached on a unix socket (src/demo/login-cache-server.ts):
// the key Apache uses, which changes remove which entries (src/logins/revocation.ts), the client's errors, and the
// systemd unit apache/LOGINS.md installs (apache/plexer-logins.service) running memcached the same way.
import net from 'node:net';
import { chmodSync, mkdtempSync, readFileSync, rmSync, statSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startLoginCacheServer, type LoginCacheServer } from '../../src/demo/login-cache-server.js';
import { loginCacheKey, loginCacheKeys } from '../../src/logins/cache-key.js';
import { MemcacheClient, MemcacheError } from '../../src/logins/memcache.js';
import { revocationFor, revoke } from '../../src/logins/revocation.js';
import { PACKAGE_ROOT } from '../../src/apache/install-paths.js';

let dir: string;
let server: LoginCacheServer;
let client: MemcacheClient;

beforeAll(async () => {
  dir = mkdtempSync('/tmp/pxlc-');
  // memcached (www-data) must reach its directory inside.
  chmodSync(dir, 0o711);
  server = await startLoginCacheServer(join(dir, 'logins'));
  client = new MemcacheClient(server.socket);
});

afterAll(async () => {
  client?.close();
  await server?.stop();
  rmSync(dir, { recursive: true, force: true });
});

// What mod_authn_socache does when a login succeeds: a value under the user's key.
function store(key: string, value = 'cafe'): Promise<string> {
  return new Promise((resolve, reject) => {
    const socket = net.createConnection(server.socket);
    socket.setEncoding('latin1');
    socket.on('connect', () => socket.write(`set ${key} 0 0 ${value.length}\r\n${value}\r\n`));
    socket.on('data', (reply: string) => (socket.destroy(), resolve(reply.trim())));
    socket.on('error', reject);
  });
}

const present = async (key: string) => {
  // delete answers whether it was there; put it back after asking.
  const was = await client.delete(key);
  if (was) await store(key);
  return was;
};

describe('the login cache key', () => {
  it("is mod_authn_socache's: authn-socache: and the hex of CONTEXT:USER (checked with Apache 2.4.71)", () => {
    expect(loginCacheKey('plexer', 'alice')).toBe('authn-socache:706c657865723a616c696365');
    expect(loginCacheKeys('alice')).toEqual([loginCacheKey('plexer', 'alice'), loginCacheKey('plexer-form', 'alice')]);
  });
});

describe('removing cached logins (plexer revoke)', () => {
  const apply = async (payload: string) => {
    const revocation = revocationFor(payload);
    if (revocation) await revoke(client, revocation);
  };

  it("removes a changed user's entries, Basic's and the login page's, and nobody else's", async () => {
    for (const key of [...loginCacheKeys('alice'), ...loginCacheKeys('bob')]) expect(await store(key)).toBe('STORED');
    await apply('u:alice');
    for (const key of loginCacheKeys('alice')) expect(await present(key)).toBe(false);
    for (const key of loginCacheKeys('bob')) expect(await present(key)).toBe(true);
    // Group and role changes leave logins alone.
    expect(revocationFor('g:tenant1')).toBeNull();
    expect(revocationFor('r:bob')).toBeNull();
    // The users TRUNCATEd: everything goes.
    await apply('*');
    for (const key of loginCacheKeys('bob')) expect(await present(key)).toBe(false);
  });

  it('says so when memcached cannot be reached (the revoker keeps the user and tries again)', async () => {
    const gone = new MemcacheClient(join(dir, 'nothing-here.sock'), 300);
    await expect(gone.delete('k')).rejects.toBeInstanceOf(MemcacheError);
    await expect(revoke(gone, { kind: 'user', user: 'alice' })).rejects.toBeInstanceOf(MemcacheError);
    gone.close();
  });

  it('leaves out keys longer than memcached takes (Apache cannot store them either), never the whole user', () => {
    const long = 'x'.repeat(110);
    expect(loginCacheKeys(long)).toEqual([loginCacheKey('plexer', long)]);
    expect(loginCacheKeys('x'.repeat(130))).toEqual([]);
  });

  it('keeps a note of its own: set, get, and a missing key', async () => {
    await client.set('plexer-revoke:test', '12345', 60);
    expect(await client.get('plexer-revoke:test')).toBe('12345');
    expect(await client.get('plexer-revoke:none')).toBeUndefined();
    await expect(client.set('k', 'a\r\nflush_all', 60)).rejects.toThrow(/line break/);
  });

  it('refuses a key memcached would misread (a space or a line break would start another command)', async () => {
    await expect(client.delete('a b')).rejects.toThrow(/not a memcached key/);
    await expect(client.delete('a\r\nflush_all')).rejects.toThrow(/not a memcached key/);
  });
});

describe('the server', () => {
  it("runs as www-data on a socket only www-data's directory leads to", () => {
    expect(statSync(join(dir, 'logins')).mode & 0o777).toBe(0o700);
    expect(statSync(server.socket).mode & 0o777).toBe(0o600);
    const status = readFileSync(`/proc/${server.pid}/status`, 'utf8');
    const uid = Number(/^Uid:\s+(\d+)/m.exec(status)![1]);
    expect(uid).toBe(statSync(join(dir, 'logins')).uid);
  });

  it('the unit apache/LOGINS.md installs starts memcached the same way: www-data, a unix socket 0600, a directory 0700', () => {
    const unit = readFileSync(join(PACKAGE_ROOT, 'apache/plexer-logins.service'), 'utf8');
    expect(unit).toMatch(/^User=www-data$/m);
    expect(unit).toMatch(/^RuntimeDirectoryMode=0700$/m);
    expect(unit).toMatch(/^ExecStart=\/usr\/bin\/memcached -s \/run\/plexer-logins\/cache\.sock -a 0600 /m);
    expect(unit).not.toMatch(/-l |-p /);
  });
});
