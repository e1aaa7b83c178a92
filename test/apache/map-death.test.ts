// mod_rewrite (Apache 2.4.71) never restarts a prg: map that dies; every later lookup silently returns "".
// The generated config fails closed on that (our 503, never a default group, never another tenant) and runs
// `plexer watchdog` as a piped logger, which Apache itself restarts, to bring the maps back with a graceful
// reload: routing must be right again within 5 s with nobody acting.
import { existsSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { mapProcesses, watchdogProcesses } from '../helpers/apache-procs.js';
import { seedTwoTenants, startTestFront, waitUntilServed, type TestFront } from '../helpers/front.js';
import { waitFor } from '../helpers/wait.js';

let t: TestFront;

// Kills `kind`'s map and asks as alice and bob until both are served by their own group again. Every answer
// meanwhile is our 503 or their own group. Returns the milliseconds from the kill to both served.
// The watchdog backs off while reloads keep being needed (a crash loop must not reload Apache without end),
// and keeps that state across its own restarts: each case starts outside the backoff window of the last.
async function outsideReloadBackoff(): Promise<void> {
  const stateFile = join(t.front.apacheDir, 'watchdog.state');
  await waitFor(
    () => !existsSync(stateFile) || Date.now() >= (JSON.parse(readFileSync(stateFile, 'utf8')) as { nextReloadAt: number }).nextReloadAt,
    30_000,
    'the reload backoff to pass',
  );
}

async function killMapAndWaitForRecovery(kind: 'group' | 'settings' | 'route'): Promise<number> {
  await outsideReloadBackoff();
  const apachePid = t.front.httpd.pid;
  const [map] = mapProcesses(apachePid, kind);
  expect(map).toBeDefined();
  const killedAt = Date.now();
  process.kill(map!, 'SIGKILL');
  const seen = new Set<string>();
  await waitFor(
    async () => {
      let served = 0;
      for (const [user, group] of [
        ['alice', 'tenant1'],
        ['bob', 'tenant2'],
      ] as const) {
        const r = await t.get('/app/whoami', { user, password: `${user}-pw`, fresh: true });
        seen.add(String(r.status));
        if (r.status === 200) {
          expect(r.json().group).toBe(group);
          served++;
        } else {
          expect(r.status).toBe(503);
          expect(r.body).toContain('plexer-error:503');
        }
      }
      return served === 2;
    },
    5_000,
    `both users served again after the ${kind} map was killed`,
    50,
  );
  const ms = Date.now() - killedAt;
  const [fresh] = mapProcesses(apachePid, kind);
  expect(fresh).toBeDefined();
  expect(fresh).not.toBe(map);
  expect(t.front.httpd.pid).toBe(apachePid);
  expect(t.front.httpd.errorLog()).toMatch(/PLX0902/);
  expect(t.front.httpd.errorLog()).not.toMatch(/No WSGI daemon process called/);
  return ms;
}

// The default config asks one route map (group and settings together); the two-map form, a group map then a
// settings map. Each form runs on its own Apache; the watchdog's --maps count is the rendered one in both.
const forms = [
  { name: 'the route map (default)', twoMaps: false, kinds: ['route'] },
  { name: 'the two-map form', twoMaps: true, kinds: ['group', 'settings'] },
] as const;

describe.each(forms)('a dead map comes back by itself: $name', ({ twoMaps, kinds }) => {
  beforeAll(async () => {
    t = await startTestFront(seedTwoTenants, { front: { extra: { twoMaps } } });
    await waitUntilServed(t, 'alice', 'alice-pw');
    await waitUntilServed(t, 'bob', 'bob-pw');
    const rendered = readFileSync(t.front.httpd.configPath, 'utf8');
    expect(rendered).toContain(`watchdog --maps ${kinds.length} `);
    for (const kind of ['group', 'settings', 'route']) {
      expect(mapProcesses(t.front.httpd.pid, kind)).toHaveLength((kinds as readonly string[]).includes(kind) ? 1 : 0);
    }
  }, 120_000);

  afterAll(() => t?.close());

  it.each(kinds)(
    'routes correctly again within 5 s after the %s map is SIGKILLed, failing closed meanwhile',
    async (kind) => {
      console.log(`${kind} map killed → both users served: ${await killMapAndWaitForRecovery(kind)} ms`);
    },
    30_000,
  );

  it('kills a map that hangs while a request waits on it (mod_rewrite would wait forever), then routes again', async () => {
    await outsideReloadBackoff();
    const apachePid = t.front.httpd.pid;
    const [map] = mapProcesses(apachePid, kinds[0]);
    process.kill(map!, 'SIGSTOP');
    const stoppedAt = Date.now();
    // This request waits on the stopped map while holding the server-wide rewrite-map lock.
    const waiting = await t.get('/app/whoami', { user: 'alice', password: 'alice-pw', fresh: true });
    expect(waiting.status).toBe(503);
    expect(t.front.httpd.errorLog()).toMatch(/PLX0903/);
    await waitFor(
      async () => (await t.get('/app/whoami', { user: 'bob', password: 'bob-pw', fresh: true })).status === 200,
      5_000,
      'bob served again',
    );
    console.log(`hung map → killed and replaced, bob served: ${Date.now() - stoppedAt} ms`);
    expect(mapProcesses(apachePid, kinds[0])).not.toContain(map);
  }, 30_000);

  it('is itself restarted by Apache when it dies, and still does its job', async () => {
    const apachePid = t.front.httpd.pid;
    const [watchdog] = watchdogProcesses(apachePid);
    expect(watchdog).toBeDefined();
    process.kill(watchdog!, 'SIGKILL');
    await waitFor(() => watchdogProcesses(apachePid).some((pid) => pid !== watchdog), 10_000, 'Apache to start a new watchdog');
    await killMapAndWaitForRecovery(kinds[0]);
  }, 30_000);
});
