// ATTACK on "a dead map is brought back by `plexer watchdog` within 5 s; meanwhile everyone gets 503".
//
// 1. A map SIGKILLed while a request is waiting on it (map stopped, a worker in pipe_read, then SIGKILL): the
//    worker must get EOF and our 503, never hang, and the watchdog must bring the map back (held).
// 2. A graceful reload (what the watchdog sends) while a lookup waits on a stopped map: the new generation
//    serves, but the old map is never killed and the worker waiting on it stays blocked (fails until fixed).
// 3. The map dying again and again (an OOM killer, a crash loop, a tenant running as the map's uid killing it):
//    the watchdog is documented to wait 3 s after a reload, doubling up to 60 s while maps keep dying, which
//    would leave everybody on 503 for longer than 5 s from the third death in a row. Held: each reload restarts
//    the watchdog itself (a piped logger), so the backoff never applies (measured ~1.1-1.4 s every time).
import http from 'node:http';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { mapProcesses, workersWaitingOnPipe } from './helpers/apache-procs.js';
import { seedTwoTenants, startTestFront, waitUntilServed, type TestFront } from './helpers/front.js';
import { waitFor } from './helpers/wait.js';

let t: TestFront;

beforeAll(async () => {
  t = await startTestFront(seedTwoTenants);
  await waitUntilServed(t, 'alice', 'alice-pw');
  await waitUntilServed(t, 'bob', 'bob-pw');
}, 120_000);

afterAll(() => t?.close());

function get(user: string, timeoutMs: number): Promise<{ status: number | 'timeout'; group?: string; body?: string }> {
  return new Promise((resolve) => {
    const auth = Buffer.from(`${user}:${user}-pw`).toString('base64');
    const request = http.get(`${t.front.httpd.url}/app/whoami`, { headers: { authorization: `Basic ${auth}` }, agent: false }, (response) => {
      let body = '';
      response.setEncoding('utf8');
      response.on('data', (chunk: string) => (body += chunk));
      response.on('end', () => {
        const status = response.statusCode ?? 0;
        resolve({ status, body, group: status === 200 ? (JSON.parse(body) as { group: string }).group : undefined });
      });
    });
    request.setTimeout(timeoutMs, () => {
      request.destroy();
      resolve({ status: 'timeout' });
    });
    request.on('error', () => resolve({ status: 'timeout' }));
  });
}

const GROUP: Record<string, string> = { alice: 'tenant1', bob: 'tenant2' };

// Kills the group map and polls as alice and bob until both are served again; every answer meanwhile must be
// our 503 or their own group. Returns ms from the kill to both served (or Infinity past `limitMs`).
async function killAndTime(limitMs: number): Promise<number> {
  const apachePid = t.front.httpd.pid;
  const [map] = await waitFor(() => { const m = mapProcesses(apachePid, 'group'); return m.length > 0 ? m : undefined; }, 10_000, 'a group map');
  const killedAt = Date.now();
  process.kill(map!, 'SIGKILL');
  while (Date.now() - killedAt < limitMs) {
    let served = 0;
    for (const user of ['alice', 'bob']) {
      const r = await get(user, 5_000);
      if (r.status === 200) {
        expect(r.group, user).toBe(GROUP[user]);
        served++;
      } else {
        expect(r.status, `${user}: ${r.body?.slice(0, 200)}`).toBe(503);
      }
    }
    if (served === 2) return Date.now() - killedAt;
    await new Promise((resolve) => setTimeout(resolve, 50));
  }
  return Infinity;
}

describe('map deaths', () => {
  it('a map killed while a request waits on it: that request ends (503), nobody hangs, routing comes back', async () => {
    const apachePid = t.front.httpd.pid;
    const [map] = mapProcesses(apachePid, 'group');
    process.kill(map!, 'SIGSTOP');
    const waiting = get('alice', 10_000);
    await waitFor(() => workersWaitingOnPipe(apachePid).length > 0, 10_000, 'a worker waiting on the stopped map');
    process.kill(map!, 'SIGKILL');
    const r = await waiting;
    console.log(`request waiting on the map when it was killed: ${r.status}`);
    expect(r.status).toBe(503);
    await waitFor(async () => (await get('alice', 3_000)).group === 'tenant1' && (await get('bob', 3_000)).group === 'tenant2', 5_000, 'routing back within 5 s');
  }, 30_000);

  // A graceful reload does NOT replace a map that is alive but stuck (SIGSTOP here; a hung event loop alike):
  // mod_rewrite's old map is left running, and the old-generation worker waiting on it stays blocked (with the
  // old generation's rewrite-map lock) until the map moves again. New requests are served by the new maps.
  it('a graceful reload while a lookup waits on a stopped map: new requests are served, the waiting one ends', async () => {
    const apachePid = t.front.httpd.pid;
    const [map] = mapProcesses(apachePid, 'group');
    process.kill(map!, 'SIGSTOP');
    const started = Date.now();
    let served = false;
    let waitingDone: number | undefined;
    let r: Awaited<ReturnType<typeof get>> | undefined;
    try {
      const waiting = get('bob', 15_000).then((x) => ((waitingDone = Date.now() - started), (r = x)));
      await waitFor(() => workersWaitingOnPipe(apachePid).length > 0, 10_000, 'a worker waiting on the stopped map');
      process.kill(apachePid, 'SIGUSR1');
      try {
        await waitFor(async () => (await get('alice', 3_000)).group === 'tenant1' && (await get('bob', 3_000)).group === 'tenant2', 5_000, 'new requests served after the reload');
        served = true;
      } catch {
        served = false;
      }
      // Give the old generation 6 s (twice APR's kill-after-timeout) to end the waiting request.
      await Promise.race([waiting, new Promise((resolve) => setTimeout(resolve, Math.max(0, 6_000 - (Date.now() - started))))]);
    } finally {
      const oldMapLeft = mapProcesses(apachePid, 'group').includes(map!);
      console.log(`graceful reload with a stopped map: new requests served: ${served}; the waiting request: ${r ? JSON.stringify(r) + ` after ${waitingDone} ms` : 'still waiting after 6 s'}; old map still there: ${oldMapLeft}`);
      try { process.kill(map!, 'SIGCONT'); } catch { /* gone */ }
    }
    expect(served, 'requests served by the new generation').toBe(true);
    expect(r, 'the request waiting on the old, stopped map ended within 6 s').toBeDefined();
  }, 30_000);

  it('comes back within 5 s after each of four deaths in a row', async () => {
    const times: number[] = [];
    for (let i = 0; i < 4; i++) {
      times.push(await killAndTime(15_000));
      if (times[times.length - 1] === Infinity) break;
    }
    console.log(`recovery after consecutive map kills (ms): ${times.join(', ')}`);
    // Held, but not for the documented reason: every graceful reload also restarts the piped loggers, so each
    // reload starts a NEW watchdog whose backoff starts over. The "3 s, doubling to 60 s" backoff never applies:
    // a map that keeps dying gets a graceful reload (and every WSGI daemon a restart) every ~1.2 s, forever.
    const log = t.front.httpd.errorLog();
    const watchdogs = new Set([...log.matchAll(/plexer\[(\d+)\] watchdog warn: map missing/g)].map((m) => m[1]));
    console.log(`${(log.match(/PLX0902/g) ?? []).length} reloads (PLX0902), sent by ${watchdogs.size} different watchdog processes`);
    expect(times.every((ms) => ms <= 5_000), `recovery times ${times.join(', ')} ms`).toBe(true);
  }, 90_000);
});
