// Regression tests from an attack review: the key check and the desync handling with awkward user names, in
// prefix mode (the rules run twice: the original request stops at the internal redirect before any lookup, the
// redirected one looks up), with both prg: maps (group and settings).
//   - names that differ only by case ("alice" / "Alice") in different groups;
//   - names with ".", "-", "+", "@";
//   - a name at the 128-byte limit (one atomic pipe write with its newline; echoed back byte for byte).
// Each must be served by its own group, directly and through its own /u/NAME prefix, before and after an
// answer is lost in each map: the rules ask again, report the desync to the watchdog (PLX0905), which reloads
// Apache with fresh pipes (PLX0904).
import http from 'node:http';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { apacheWorkers, mapProcesses, workersWaitingOnPipe } from '../helpers/apache-procs.js';
import { cliOk, startTestFront, waitUntilServed, type TestFront } from '../helpers/front.js';
import { waitFor } from '../helpers/wait.js';

const LONG = ('z.a-b+c@' + 'x'.repeat(200)).slice(0, 128);
const USERS: Array<{ user: string; group: string; settings: string }> = [
  { user: 'alice', group: 'tenant1', settings: 'tenants.settings_alpha' },
  { user: 'Alice', group: 'tenant2', settings: 'tenants.settings_beta' },
  { user: 'a.b-c+d@e.example', group: 'tenant2', settings: 'tenants.settings_beta' },
  { user: LONG, group: 'tenant3', settings: 'tenants.settings_generic' },
];
const password = (user: string) => `pw-${user.length}-${user.charCodeAt(0)}`;

let t: TestFront;

beforeAll(async () => {
  expect(Buffer.byteLength(LONG)).toBe(128);
  t = await startTestFront(
    async (cli) => {
      await cliOk(cli, ['group', 'add', 'tenant1', '--settings', 'tenants.settings_alpha']);
      await cliOk(cli, ['group', 'add', 'tenant2', '--settings', 'tenants.settings_beta']);
      await cliOk(cli, ['group', 'add', 'tenant3', '--settings', 'tenants.settings_generic']);
      for (const u of USERS) await cliOk(cli, ['user', 'add', u.user, '--group', u.group, '--password-stdin'], `${password(u.user)}\n`);
      // 129 bytes is not a user name: the store refuses it.
      const tooLong = await cli(['user', 'add', LONG + 'x', '--group', 'tenant1', '--password-stdin'], 'pw\n');
      expect(tooLong.code).not.toBe(0);
      // The two-map form: a lost answer in the group map and in the settings map are the cases here.
    },
    { front: { routing: 'prefix', settingsFrom: 'map', extra: { twoMaps: true } } },
  );
  for (const u of USERS) await waitUntilServed(t, u.user, password(u.user));
}, 120_000);

afterAll(() => t?.close());

type Served = { status: number | 'timeout' | 'reset'; group?: string; user?: string; settings?: string };

function get(user: string, path: string, timeoutMs = 8_000): Promise<Served> {
  return new Promise((resolve) => {
    const auth = Buffer.from(`${user}:${password(user)}`).toString('base64');
    const request = http.get(`${t.front.httpd.url}${path}`, { headers: { authorization: `Basic ${auth}` }, agent: false }, (response) => {
      let body = '';
      response.setEncoding('utf8');
      response.on('data', (chunk: string) => (body += chunk));
      response.on('end', () => {
        const status = response.statusCode ?? 0;
        resolve(status === 200 ? { status, ...(JSON.parse(body) as object) } : { status });
      });
    });
    request.setTimeout(timeoutMs, () => {
      request.destroy();
      resolve({ status: 'timeout' });
    });
    // A connection reset by a worker this test SIGKILLed, not a hang.
    request.on('error', () => resolve({ status: 'reset' }));
  });
}

const prefixOf = (user: string) => `/u/${encodeURIComponent(user).replace(/%40/g, '@').replace(/%2B/g, '+')}/app/whoami`;

function check(u: (typeof USERS)[number], r: Served): 'ok' | 'wrong' | 'refused' {
  if (r.status !== 200) return 'refused';
  return r.group === u.group && r.user === u.user && r.settings === u.settings ? 'ok' : 'wrong';
}

async function loseOneAnswer(kind: 'group' | 'settings', victim: string): Promise<void> {
  const apachePid = t.front.httpd.pid;
  const [map] = mapProcesses(apachePid, kind);
  expect(map, `${kind} map`).toBeDefined();
  process.kill(map!, 'SIGSTOP');
  try {
    const lost = get(victim, '/app/whoami', 20_000);
    await waitFor(() => workersWaitingOnPipe(apachePid).length > 0, 10_000, 'a worker waiting for the stopped map');
    for (const pid of apacheWorkers(apachePid)) process.kill(pid, 'SIGKILL');
    await lost;
  } finally {
    process.kill(map!, 'SIGCONT');
  }
}

describe('awkward names in prefix mode', () => {
  it('each is served by its own group, through /app and through its own prefix; other prefixes are refused', async () => {
    for (const u of USERS) {
      const direct = await get(u.user, '/app/whoami');
      expect(check(u, direct), `${u.user} ${JSON.stringify(direct)}`).toBe('ok');
      const own = await get(u.user, prefixOf(u.user));
      expect(check(u, own), `${u.user} via ${prefixOf(u.user)} ${JSON.stringify(own)}`).toBe('ok');
      for (const other of USERS.filter((o) => o.user !== u.user)) {
        expect((await get(u.user, prefixOf(other.user))).status, `${u.user} -> ${prefixOf(other.user)}`).toBe(403);
      }
    }
  }, 60_000);

  for (const kind of ['group', 'settings'] as const) {
    it(`after an answer is lost in the ${kind} map: nobody served by another's group, no request hangs`, async () => {
      const count = (id: string) => (t.front.httpd.errorLog().match(new RegExp(id, 'g')) ?? []).length;
      const [reportsBefore, reloadsBefore] = [count('PLX0905'), count('PLX0904')];
      await loseOneAnswer(kind, 'alice');
      const results: Array<{ user: string; outcome: string; status: Served['status'] }> = [];
      for (let i = 0; i < 24; i++) {
        const u = USERS[(i + 1) % USERS.length]!;
        const r = await get(u.user, i % 2 === 0 ? '/app/whoami' : prefixOf(u.user));
        results.push({ user: u.user.slice(0, 12), outcome: check(u, r), status: r.status });
      }
      console.log(`${kind}: ${JSON.stringify(results.slice(0, 6))} … not ok: ${results.filter((r) => r.outcome !== 'ok').length}/24`);
      expect(results.filter((r) => r.outcome === 'wrong')).toEqual([]);
      expect(results.filter((r) => r.status === 'timeout')).toEqual([]);
      // One answer behind: every lookup asks once more and reads its own.
      expect(results.filter((r) => r.outcome !== 'ok' && r.status !== 'reset')).toEqual([]);
      // The loss was real: a request reported it through the piped log, and the watchdog reloads Apache.
      await waitFor(() => count('PLX0905') > reportsBefore, 5_000, 'the desync reported to the watchdog (PLX0905)');
      await waitFor(() => count('PLX0904') > reloadsBefore, 30_000, "the watchdog's reload for the desync (PLX0904)");
      for (const u of USERS)
        await waitFor(async () => check(u, await get(u.user, '/app/whoami')) === 'ok', 10_000, `${u.user} served after the reload`);
    }, 90_000);
  }
});
