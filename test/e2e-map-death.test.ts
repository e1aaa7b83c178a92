// What mod_rewrite (Apache 2.4.71) does when its prg: map dies: it does not restart it, and every later
// lookup silently returns "" — so the generated config must fail closed on an empty answer: our 503 page,
// never a default group and never another tenant. A graceful reload starts a new map.
import { readdirSync, readFileSync } from 'node:fs';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { seedTwoTenants, startTestFront, waitUntilServed, type TestFront } from './helpers/front.js';

let t: TestFront;

function mapProcesses(apachePid: number, kind: string): number[] {
  return readdirSync('/proc').filter((p) => /^\d+$/.test(p)).filter((pid) => {
    try {
      const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
      const parent = Number(stat.split(') ')[1]!.split(' ')[1]);
      const cmdline = readFileSync(`/proc/${pid}/cmdline`, 'utf8').split('\0');
      return parent === apachePid && cmdline.includes('map') && cmdline.includes(kind);
    } catch {
      return false;
    }
  }).map(Number);
}

beforeAll(async () => {
  t = await startTestFront(seedTwoTenants);
  await waitUntilServed(t, 'alice', 'alice-pw');
}, 120_000);

afterAll(() => t?.close());

describe('a dead map fails closed', () => {
  it('serves our 503 to everyone once the map is killed, keeps Apache up, and recovers on a graceful reload', async () => {
    const apachePid = t.front.httpd.pid;
    expect((await t.get('/app/whoami', { user: 'alice', password: 'alice-pw' })).json().group).toBe('tenant1');
    expect((await t.get('/app/whoami', { user: 'bob', password: 'bob-pw' })).json().group).toBe('tenant2');
    const maps = mapProcesses(apachePid, 'group');
    expect(maps).toHaveLength(1);
    process.kill(maps[0]!, 'SIGKILL');
    await new Promise((r) => setTimeout(r, 200));
    expect(mapProcesses(apachePid, 'group')).toEqual([]);
    for (const [user, password] of [['alice', 'alice-pw'], ['bob', 'bob-pw']] as const) {
      const r = await t.get('/app/whoami', { user, password });
      expect(r.status).toBe(503);
      expect(r.body).toContain('plexer-error:503');
    }
    // Not restarted by Apache: still none a second later, and the parent is the same.
    await new Promise((r) => setTimeout(r, 1_000));
    expect(mapProcesses(apachePid, 'group')).toEqual([]);
    expect(() => process.kill(apachePid, 0)).not.toThrow();
    expect(t.front.httpd.errorLog()).not.toMatch(/No WSGI daemon process called/);

    await t.front.httpd.graceful();
    expect(mapProcesses(apachePid, 'group')).toHaveLength(1);
    let alice = await t.get('/app/whoami', { user: 'alice', password: 'alice-pw', fresh: true });
    for (let i = 0; i < 50 && alice.status !== 200; i++) {
      await new Promise((r) => setTimeout(r, 100));
      alice = await t.get('/app/whoami', { user: 'alice', password: 'alice-pw', fresh: true });
    }
    expect(alice.json().group).toBe('tenant1');
    expect(t.front.httpd.pid).toBe(apachePid);
  });
});
