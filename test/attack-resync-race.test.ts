// ATTACK: the "!plexer-resync" heal under concurrency.
//
// The rules send "!plexer-resync" (read by the map, never answered) after any answer that names another key,
// on the argument that "a mismatch means our own answer is still waiting in the pipe". That holds for ONE
// request at a time. But mod_rewrite releases the rewrite-map lock between the lookup and the resync, and once
// the pipe is one answer behind, EVERY lookup reads the answer to the previous lookup's key: two users whose
// lookups both land before the first resync both see a mismatch and both resync, yet the pipe holds only ONE
// extra line. The second resync writes a line the map never answers and waits on the pipe forever, holding the
// server-wide rewrite-map lock: every mapped request of the whole server then hangs, the map is alive (the
// watchdog sees nothing wrong), and nothing recovers by itself.
//
// Reproduced here: one answer lost exactly as in test/e2e-map-desync.test.ts (map stopped, a worker waits on
// the pipe, workers killed), then several users' requests queue on the lock while the map is still stopped, and
// the map is resumed. The claim under test: no worker is ever left waiting on the pipe and every request ends.
import { spawn } from 'node:child_process';
import http from 'node:http';
import { readFileSync } from 'node:fs';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { apacheWorkers, mapProcesses, workersWaitingOnPipe } from './helpers/apache-procs.js';
import { cliOk, startTestFront, waitUntilServed, type TestFront } from './helpers/front.js';
import { waitFor } from './helpers/wait.js';

const USERS = ['u0', 'u1', 'u2', 'u3', 'u4', 'u5', 'u6', 'u7'];
const groupOf = (user: string) => (Number(user.slice(1)) % 2 === 0 ? 'tenant1' : 'tenant2');
const password = (user: string) => `${user}-pw`;

let t: TestFront;

beforeAll(async () => {
  t = await startTestFront(async (cli) => {
    for (const group of ['tenant1', 'tenant2']) await cliOk(cli, ['group', 'add', group, '--settings', 'tenants.settings_generic']);
    await cliOk(cli, ['user', 'add', 'alice', '--group', 'tenant1', '--password-stdin'], 'alice-pw\n');
    for (const u of USERS) await cliOk(cli, ['user', 'add', u, '--group', groupOf(u), '--password-stdin'], `${password(u)}\n`);
  });
  await waitUntilServed(t, 'alice', 'alice-pw');
  // Every password in socache: the queued requests below reach the rewrite rules without an authenticator fork.
  for (const u of USERS) await waitUntilServed(t, u, password(u));
}, 120_000);

afterAll(() => t?.close());

type Outcome = { user: string; status: number | 'timeout' | 'error'; group?: string };

function get(user: string, timeoutMs: number): Promise<Outcome> {
  return new Promise((resolve) => {
    const auth = Buffer.from(`${user}:${password(user)}`).toString('base64');
    const request = http.get(`${t.front.httpd.url}/app/whoami`, { headers: { authorization: `Basic ${auth}` }, agent: false }, (response) => {
      let body = '';
      response.setEncoding('utf8');
      response.on('data', (chunk: string) => (body += chunk));
      response.on('end', () => {
        let group: string | undefined;
        try {
          group = response.statusCode === 200 ? (JSON.parse(body) as { group: string }).group : undefined;
        } catch {
          group = undefined;
        }
        resolve({ user, status: response.statusCode ?? 0, group });
      });
    });
    request.setTimeout(timeoutMs, () => {
      request.destroy();
      resolve({ user, status: 'timeout' });
    });
    request.on('error', () => resolve({ user, status: 'error' }));
  });
}

const wchan = (pid: number) => {
  try {
    return readFileSync(`/proc/${pid}/wchan`, 'latin1');
  } catch {
    return 'gone';
  }
};

const procState = (pid: number) => {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'latin1');
    return stat.slice(stat.lastIndexOf(') ') + 2).split(' ')[0];
  } catch {
    return 'gone';
  }
};

describe('subrequests into the WSGI directory', () => {
  // /app/app/whoami: mod_wsgi computes PATH_TRANSLATED with a sub-request for PATH_INFO "/app/whoami", which
  // maps to the WSGI script again and runs the per-directory rules (and a map lookup) inside the request.
  // An extra, answered lookup must not shift the pipe: no resync, everyone still routed to their own group.
  it('never shift the pipe nor route anyone elsewhere', async () => {
    const before = (t.front.httpd.errorLog().match(/PLX0901/g) ?? []).length;
    for (let i = 0; i < 20; i++) {
      const u = USERS[i % USERS.length]!;
      const auth = { authorization: `Basic ${Buffer.from(`${u}:${password(u)}`).toString('base64')}` };
      const nested = await t.get(i % 2 === 0 ? '/app/app/whoami' : '/app/whoami/app/x', { headers: auth, fresh: true });
      expect([200, 404], nested.body.slice(0, 200)).toContain(nested.status);
      const plain = await get(u, 5_000);
      expect(plain.group, u).toBe(groupOf(u));
    }
    expect((t.front.httpd.errorLog().match(/PLX0901/g) ?? []).length).toBe(before);
  }, 60_000);
});

describe('resync under concurrency (one answer lost, several users at once)', () => {
  // Statistical (who wins the lock between one worker's lookup and its resync): hung in 2 of 5 runs before the fix.
  it('never leaves a worker waiting on the pipe for an answer that will not come (no server-wide hang)', async () => {
    const apachePid = t.front.httpd.pid;
    const [map] = mapProcesses(apachePid, 'group');
    expect(map).toBeDefined();
    const resyncsBefore = (t.front.httpd.errorLog().match(/PLX0901/g) ?? []).length;

    // 1. Lose one answer: alice's key reaches the (stopped) map's stdin, the worker that wrote it dies.
    process.kill(map!, 'SIGSTOP');
    let outcomes: Outcome[] = [];
    let stuck: number[] = [];
    let probe: Outcome | undefined;
    try {
      const lost = get('alice', 20_000);
      await waitFor(() => workersWaitingOnPipe(apachePid).length > 0, 10_000, 'a worker waiting for the stopped map');
      for (const pid of apacheWorkers(apachePid)) process.kill(pid, 'SIGKILL');
      await lost;
      // 2. Several users queue on the rewrite-map lock while the map is still stopped: one waits on the pipe,
      //    the others on the lock.
      const pending = USERS.map((u) => get(u, 8_000));
      await waitFor(() => workersWaitingOnPipe(apachePid).length > 0, 10_000, 'a queued request waiting on the stopped map');
      await new Promise((resolve) => setTimeout(resolve, 1_500));
      // 3. Resume the map: it answers alice's key, then the first queued user's; the queue drains.
      process.kill(map!, 'SIGCONT');
      outcomes = await Promise.all(pending);
      // 4. A fresh request after the storm, and who is still waiting on a (running, healthy) map.
      probe = await get('u0', 5_000);
      stuck = workersWaitingOnPipe(apachePid);
    } finally {
      process.kill(map!, 'SIGCONT');
    }
    const mapState = procState(map!);
    const resyncs = (t.front.httpd.errorLog().match(/PLX0901/g) ?? []).length - resyncsBefore;
    console.log(JSON.stringify({ outcomes, probe, stuckWorkers: stuck, mapState, mapAlive: mapProcesses(apachePid, 'group').includes(map!), resyncs }));

    // Whatever happened, never another user's group.
    for (const o of [...outcomes, ...(probe ? [probe] : [])]) if (o.status === 200) expect(o.group, o.user).toBe(groupOf(o.user));

    try {
      // The claim: nobody is left waiting on the pipe, every request ends, the server still answers.
      expect(stuck, `workers blocked on the map pipe while the map is running (${mapState}); ${resyncs} resyncs logged`).toEqual([]);
      expect(outcomes.filter((o) => o.status === 'timeout').map((o) => o.user)).toEqual([]);
      expect(probe?.status).not.toBe('timeout');
    } finally {
      // Recovery for the teardown: a map that dies gives the blocked worker EOF; the watchdog then reloads.
      if (stuck.length > 0 && mapProcesses(apachePid, 'group').includes(map!)) {
        process.kill(map!, 'SIGKILL');
        await waitFor(async () => (await get('u1', 3_000)).status === 200, 20_000, 'recovery after killing the map');
      }
    }
  }, 60_000);

  // The same race made deterministic: the first user's worker is slowed (strace delays its lock syscalls by
  // 1.5 s, so its "!plexer-resync" comes late) while a second user's request takes the lock in between.
  //   pipe after the lost answer:   [alice's answer]          (map stopped, "alice" and "u2" written)
  //   u2's worker (slowed) reads    alice's answer  -> mismatch, will resync 1.5 s later
  //   u3's worker                   writes u3, reads u2's answer -> mismatch, resyncs: reads u3's answer
  //                                 asks again: reads its own answer (served)
  //   u2's worker resyncs           nothing is left in the pipe: waits forever, holding the lock.
  it('deterministic: a slowed first resync and a second user in between leave Apache waiting forever', async () => {
    const apachePid = t.front.httpd.pid;
    const [map] = mapProcesses(apachePid, 'group');
    expect(map).toBeDefined();
    process.kill(map!, 'SIGSTOP');
    let strace: ReturnType<typeof spawn> | undefined;
    let x: Outcome | undefined;
    let y: Outcome | undefined;
    let probe: Outcome | undefined;
    let stuck: number[] = [];
    let wx: number | undefined;
    try {
      const lost = get('alice', 20_000);
      await waitFor(() => workersWaitingOnPipe(apachePid).length > 0, 10_000, 'a worker waiting for the stopped map');
      for (const pid of apacheWorkers(apachePid)) process.kill(pid, 'SIGKILL');
      await lost;
      const px = get('u2', 8_000);
      [wx] = await waitFor(() => { const w = workersWaitingOnPipe(apachePid); return w.length > 0 ? w : undefined; }, 10_000, "u2's worker waiting on the stopped map");
      strace = spawn('strace', ['-qq', '-p', String(wx), '-e', 'trace=fcntl,flock', '-e', 'inject=fcntl,flock:delay_exit=1500000', '-o', '/dev/null'], { stdio: 'ignore' });
      await waitFor(() => /TracerPid:\s+[1-9]/.test(readFileSync(`/proc/${wx}/status`, 'latin1')), 5_000, 'strace attached');
      const py = get('u3', 8_000);
      // u3's worker is blocked on the rewrite-map lock that u2's worker holds.
      await waitFor(() => apacheWorkers(apachePid).some((pid) => pid !== wx && /lock|fcntl|flock/i.test(wchan(pid))), 10_000, "u3's worker waiting on the lock");
      process.kill(map!, 'SIGCONT');
      [x, y] = await Promise.all([px, py]);
      probe = await get('u0', 4_000);
      stuck = workersWaitingOnPipe(apachePid);
    } finally {
      process.kill(map!, 'SIGCONT');
      if (strace?.pid) process.kill(strace.pid, 'SIGTERM');
    }
    const resyncs = (t.front.httpd.errorLog().match(/PLX0901/g) ?? []).length;
    console.log(JSON.stringify({ slowed: { worker: wx, ...x }, between: y, probe, stuckWorkers: stuck, mapState: procState(map!), resyncsLogged: resyncs }));
    for (const o of [x, y, probe]) if (o?.status === 200) expect(o.group, o.user).toBe(groupOf(o.user));
    try {
      expect(stuck, 'workers blocked on the pipe of a running map').toEqual([]);
      expect(probe?.status, 'a fresh request after the race').not.toBe('timeout');
    } finally {
      if (stuck.length > 0 && mapProcesses(apachePid, 'group').includes(map!)) {
        process.kill(map!, 'SIGKILL');
        await waitFor(async () => (await get('u1', 3_000)).status === 200, 20_000, 'recovery after killing the map');
      }
    }
  }, 60_000);
});
