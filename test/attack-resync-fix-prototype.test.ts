// The fix proposed for test/attack-resync-race.test.ts, tried against a real Apache by editing the rendered
// config (nothing under src/ is changed): never send a key the map does not answer. On an answer that names
// another key the rules only mark the request (E=PLEXER_DESYNC:1; it ends in our 503 as before), and a piped
// logger with `env=PLEXER_DESYNC` — the watchdog's pipe in the real fix — asks Apache for a graceful reload,
// which gives every map a fresh pipe. No lookup can then wait for a line that will not come, however many
// workers see the shift at once.
//
// Checked with the exact interleaving that hangs today (a slowed first mismatch, a second user in between) and
// with several users at once; nobody may hang, nobody may be served by another user's group, and routing must
// be right again within 5 s.
import { spawn } from 'node:child_process';
import { readFileSync, writeFileSync } from 'node:fs';
import http from 'node:http';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { apacheWorkers, mapProcesses, workersWaitingOnPipe } from './helpers/apache-procs.js';
import { cliOk, startTestFront, waitUntilServed, type TestFront } from './helpers/front.js';
import { waitFor } from './helpers/wait.js';

const USERS = ['u0', 'u1', 'u2', 'u3', 'u4', 'u5', 'u6', 'u7'];
const groupOf = (user: string) => (Number(user.slice(1)) % 2 === 0 ? 'tenant1' : 'tenant2');
const password = (user: string) => `${user}-pw`;

let t: TestFront;

// Stand-in for the watchdog's new duty: any line on stdin means "a request read an answer for another key".
const RELOADER = `
let asked = false;
process.stdin.on('data', () => {
  if (asked) return;
  asked = true;
  process.stderr.write('PLXDESYNC desync reported by the rules: graceful reload\\n');
  try { process.kill(process.ppid, 'SIGUSR1'); } catch {}
});
process.stdin.on('end', () => process.exit(0));
`;

function applyFix(config: string, reloader: string): string {
  const fixed = config.replace(
    /^(\s*)RewriteRule \^ - \[C,E=PLEXER_RESYNC:\$\{[a-z_]+:!plexer-resync\}\]\n\s*RewriteRule \^ - \[E=[A-Z_]+:\$\{[a-z_]+:.+\}\]$/gm,
    '$1RewriteRule ^ - [E=PLEXER_DESYNC:1]',
  );
  return fixed.replace(/^(CustomLog "\|.* watchdog --maps \d+" "-" env=PLEXER_WATCHDOG_NEVER)$/m, `$1\nCustomLog "|/usr/bin/node ${reloader}" "desync %u" env=PLEXER_DESYNC`);
}

beforeAll(async () => {
  t = await startTestFront(async (cli) => {
    for (const group of ['tenant1', 'tenant2']) await cliOk(cli, ['group', 'add', group, '--settings', 'tenants.settings_generic']);
    await cliOk(cli, ['user', 'add', 'alice', '--group', 'tenant1', '--password-stdin'], 'alice-pw\n');
    for (const u of USERS) await cliOk(cli, ['user', 'add', u, '--group', groupOf(u), '--password-stdin'], `${password(u)}\n`);
  });
  const reloader = join(t.stateDir, 'desync-reloader.mjs');
  writeFileSync(reloader, RELOADER, { mode: 0o644 });
  const original = readFileSync(t.front.httpd.configPath, 'utf8');
  const fixed = applyFix(original, reloader);
  expect(fixed).not.toContain('plexer-resync');
  expect(fixed.match(/E=PLEXER_DESYNC:1/g)?.length).toBe(2); // group and settings
  expect(fixed).toContain('env=PLEXER_DESYNC');
  writeFileSync(t.front.httpd.configPath, fixed);
  await t.front.httpd.graceful();
  await waitUntilServed(t, 'alice', 'alice-pw');
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
        const status = response.statusCode ?? 0;
        resolve({ user, status, group: status === 200 ? (JSON.parse(body) as { group: string }).group : undefined });
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

// The reload this fix triggers replaces the map: it may be gone by the time we resume it.
const signal = (pid: number | undefined, sig: NodeJS.Signals) => {
  try {
    if (pid) process.kill(pid, sig);
  } catch {
    // already gone
  }
};

const reloads = () => (t.front.httpd.errorLog().match(/PLXDESYNC/g) ?? []).length;

async function allServedCorrectly(): Promise<boolean> {
  for (const u of USERS.slice(0, 4)) if ((await get(u, 3_000)).group !== groupOf(u)) return false;
  return true;
}

async function loseOneAnswerKeepStopped(map: number): Promise<void> {
  const apachePid = t.front.httpd.pid;
  process.kill(map, 'SIGSTOP');
  const lost = get('alice', 20_000);
  await waitFor(() => workersWaitingOnPipe(apachePid).length > 0, 10_000, 'a worker waiting for the stopped map');
  for (const pid of apacheWorkers(apachePid)) process.kill(pid, 'SIGKILL');
  await lost;
}

describe('proposed fix: a mismatch marks the request and triggers a reload; nothing waits on the pipe', () => {
  it('the interleaving that hangs today (slowed first mismatch, a second user in between): no hang, healed', async () => {
    const apachePid = t.front.httpd.pid;
    const [map] = mapProcesses(apachePid, 'group');
    const before = reloads();
    let strace: ReturnType<typeof spawn> | undefined;
    let outcomes: Outcome[] = [];
    try {
      await loseOneAnswerKeepStopped(map!);
      const px = get('u2', 8_000);
      const [wx] = await waitFor(() => { const w = workersWaitingOnPipe(apachePid); return w.length > 0 ? w : undefined; }, 10_000, "u2's worker");
      strace = spawn('strace', ['-qq', '-p', String(wx), '-e', 'trace=fcntl,flock', '-e', 'inject=fcntl,flock:delay_exit=1500000', '-o', '/dev/null'], { stdio: 'ignore' });
      await waitFor(() => /TracerPid:\s+[1-9]/.test(readFileSync(`/proc/${wx}/status`, 'latin1')), 5_000, 'strace attached');
      const py = get('u3', 8_000);
      await waitFor(() => apacheWorkers(apachePid).some((pid) => pid !== wx && /lock|fcntl|flock/i.test(wchan(pid))), 10_000, "u3's worker on the lock");
      signal(map, 'SIGCONT');
      outcomes = await Promise.all([px, py]);
    } finally {
      signal(map, 'SIGCONT');
      signal(strace?.pid, 'SIGTERM');
    }
    console.log(`fixed rules, deterministic race: ${JSON.stringify(outcomes)}`);
    expect(outcomes.filter((o) => o.status === 'timeout')).toEqual([]);
    for (const o of outcomes) if (o.status === 200) expect(o.group).toBe(groupOf(o.user));
    const started = Date.now();
    await waitFor(allServedCorrectly, 5_000, 'routing right again');
    console.log(`healed ${Date.now() - started} ms after the race; ${reloads() - before} desync reload(s)`);
    expect(reloads()).toBeGreaterThan(before);
    expect(workersWaitingOnPipe(apachePid)).toEqual([]);
  }, 60_000);

  it('several users at once after a lost answer: no hang, nobody in another group, healed within 5 s', async () => {
    const apachePid = t.front.httpd.pid;
    const [map] = await waitFor(() => { const m = mapProcesses(apachePid, 'group'); return m.length > 0 ? m : undefined; }, 10_000, 'group map');
    let outcomes: Outcome[] = [];
    try {
      await loseOneAnswerKeepStopped(map!);
      const pending = USERS.map((u) => get(u, 8_000));
      await waitFor(() => workersWaitingOnPipe(apachePid).length > 0, 10_000, 'a queued request on the stopped map');
      signal(map, 'SIGCONT');
      outcomes = await Promise.all(pending);
    } finally {
      signal(map, 'SIGCONT');
    }
    console.log(`fixed rules, 8 users at once: ${outcomes.map((o) => o.status).join(' ')}`);
    expect(outcomes.filter((o) => o.status === 'timeout' || o.status === 'error')).toEqual([]);
    for (const o of outcomes) if (o.status === 200) expect(o.group).toBe(groupOf(o.user));
    await waitFor(allServedCorrectly, 5_000, 'routing right again');
    expect(workersWaitingOnPipe(apachePid)).toEqual([]);
  }, 60_000);
});
