// Regression tests from an attack review of "a dead map is brought back by `plexer watchdog`; meanwhile
// everyone gets 503".
//
// 1. A map SIGKILLed while a request is waiting on it: the worker gets EOF and our 503, never hangs, and the
//    watchdog brings the map back.
// 2. A graceful reload while a worker waits on a stopped map: the new generation serves, and the waiting request
//    ends (our 503) when the old map is killed, by Apache (SIGKILL ~3 s after the reload) or by the watchdog
//    (PLX0903: a map that keeps a worker waiting 2 s without writing), whichever comes first.
// 3. The map dying again and again (an OOM killer, a crash loop): every reload restarts the watchdog (a piped
//    logger), which keeps its backoff in --state-file, so the reloads come further and further apart (1 s, 2 s,
//    4 s … 60 s), instead of a reload (and a restart of every WSGI daemon) every ~1.2 s forever.
import { existsSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { coerceError } from '../../src/errors.js';
import { mapProcesses, workersWaitingOnPipe } from '../helpers/apache-procs.js';
import { seedTwoTenants, startTestFront, type TestFront, waitUntilServed, whoamiWithin } from '../helpers/front.js';
import { waitFor } from '../helpers/wait.js';

let t: TestFront;

beforeAll(async () => {
  t = await startTestFront(seedTwoTenants);
  await waitUntilServed(t, 'alice', 'alice-pw');
  await waitUntilServed(t, 'bob', 'bob-pw');
}, 120_000);

afterAll(() => t?.close());

const get = (user: string, timeoutMs: number) => whoamiWithin(t, user, timeoutMs);

const GROUP: Record<string, string> = { alice: 'tenant1', bob: 'tenant2' };

// Kills the group map and polls as alice and bob until both are served again; every answer meanwhile must be
// our 503 or their own group. Returns ms from the kill to both served (or Infinity past `limitMs`).
async function killAndTime(limitMs: number): Promise<number> {
  const apachePid = t.front.httpd.pid;
  const [map] = await waitFor(
    () => {
      const m = mapProcesses(apachePid, 'route');
      return m.length > 0 ? m : undefined;
    },
    10_000,
    'a route map',
  );
  const killedAt = Date.now();
  process.kill(map!, 'SIGKILL');
  const bothServed = async () => {
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
    return served === 2;
  };
  try {
    await waitFor(bothServed, limitMs, 'alice and bob served again', 50);
  } catch (error) {
    if (!coerceError(error).message.startsWith('timed out')) throw error;
    return Infinity;
  }
  return Date.now() - killedAt;
}

describe('map deaths', () => {
  it('a map killed while a request waits on it: that request ends (503), nobody hangs, routing comes back', async () => {
    const apachePid = t.front.httpd.pid;
    const [map] = mapProcesses(apachePid, 'route');
    process.kill(map!, 'SIGSTOP');
    const waiting = get('alice', 10_000);
    await waitFor(() => workersWaitingOnPipe(apachePid).length > 0, 10_000, 'a worker waiting on the stopped map');
    process.kill(map!, 'SIGKILL');
    const r = await waiting;
    console.log(`request waiting on the map when it was killed: ${r.status}`);
    expect(r.status).toBe(503);
    await waitFor(
      async () => (await get('alice', 3_000)).group === 'tenant1' && (await get('bob', 3_000)).group === 'tenant2',
      5_000,
      'routing back within 5 s',
    );
  }, 30_000);

  it('a graceful reload while a lookup waits on a stopped map: new requests are served, the waiting one ends', async () => {
    const apachePid = t.front.httpd.pid;
    const [map] = mapProcesses(apachePid, 'route');
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
        await waitFor(
          async () => (await get('alice', 3_000)).group === 'tenant1' && (await get('bob', 3_000)).group === 'tenant2',
          5_000,
          'new requests served after the reload',
        );
        served = true;
      } catch {
        served = false;
      }
      // Give the old generation 6 s (twice APR's kill-after-timeout) to end the waiting request.
      await Promise.race([waiting, new Promise((resolve) => setTimeout(resolve, Math.max(0, 6_000 - (Date.now() - started))))]);
    } finally {
      const oldMapLeft = mapProcesses(apachePid, 'route').includes(map!);
      console.log(
        `graceful reload with a stopped map: new requests served: ${served}; the waiting request: ${r ? JSON.stringify(r) + ` after ${waitingDone} ms` : 'still waiting after 6 s'}; old map still there: ${oldMapLeft}`,
      );
      try {
        process.kill(map!, 'SIGCONT');
      } catch {
        /* gone */
      }
    }
    expect(served, 'requests served by the new generation').toBe(true);
    expect(r, 'the request waiting on the old, stopped map ended within 6 s').toBeDefined();
    expect(r!.status).toBe(503);
  }, 30_000);

  it('four deaths in a row: routing comes back after each, the reloads backing off across watchdog restarts', async () => {
    // Start outside the backoff window left by the cases above.
    const stateFile = join(t.stateDir, 'watchdog.state');
    const state = () =>
      existsSync(stateFile)
        ? (JSON.parse(readFileSync(stateFile, 'utf8')) as { nextReloadAt: number; backoffMs: number; lastReloadAt: number })
        : undefined;
    await waitFor(() => Date.now() >= (state()?.nextReloadAt ?? 0), 30_000, 'the reload backoff to pass');
    // The backoff the next reload starts (a quiet minute resets it to 1 s).
    const saved = state();
    const backoff = saved === undefined || Date.now() - saved.lastReloadAt >= 60_000 ? 1_000 : saved.backoffMs;
    const before = reloads().length;
    const times: number[] = [];
    for (let i = 0; i < 4; i++) {
      // Up to 4 s, 8 s, 16 s … of backoff when the cases above left it at 4 s.
      times.push(await killAndTime(40_000));
      if (times[times.length - 1] === Infinity) break;
    }
    const ours = reloads().slice(before);
    const gaps = ours.slice(1).map((r, i) => r.at - ours[i]!.at);
    console.log(
      `recovery after consecutive map kills (ms): ${times.join(', ')}; reloads ${gaps.join(', ')} ms apart, by ${new Set(ours.map((r) => r.watchdog)).size} watchdog processes`,
    );
    expect(
      times.every((ms) => ms < Infinity),
      `recovery times ${times.join(', ')} ms`,
    ).toBe(true);
    expect(ours).toHaveLength(4);
    // Each reload restarts the watchdog; the backoff holds anyway (saved in --state-file): it doubles. The log
    // stamps come a few ms after each decision, hence the 50 ms.
    expect(new Set(ours.map((r) => r.watchdog)).size).toBe(4);
    gaps.forEach((gap, i) => expect(gap, `gap ${i}`).toBeGreaterThanOrEqual(backoff * 2 ** i - 50));
    expect(gaps[2]).toBeGreaterThanOrEqual(4_000 - 50);
  }, 120_000);
});

// The reloads the watchdog asked for because a map was missing (PLX0902), with the watchdog that asked.
function reloads(): Array<{ at: number; watchdog: string }> {
  return [...t.front.httpd.errorLog().matchAll(/^(\S+) plexer\[(\d+)\] watchdog warn: .*PLX0902/gm)].map((m) => ({
    at: Date.parse(m[1]!),
    watchdog: m[2]!,
  }));
}
