// What a graceful reload does to logged-in users, against real Apaches: with the login cache in Apache's shared
// memory (the default) every user is checked again after it; in memcached (--login-cache) nobody is. Both in the
// same run, N users asking 20 at a time: their first logins, then the same requests right after one reload.
// The figures are printed, not asserted (a timed test is a benchmark's job): `npm run bench:logins` runs this at
// full size (200 users, bcrypt cost 10) and reports them. Sizes: PLEXER_LOGIN_USERS (default 12),
// PLEXER_LOGIN_COST (bcrypt cost of their passwords, default 4).
import { writeFileSync } from 'node:fs';
import http from 'node:http';
import { afterEach, describe, expect, it } from 'vitest';
import { adminConfig, loadConfig } from '../../src/config.js';
import { hashPassword } from '../../src/password.js';
import { createPool } from '../../src/store/connect.js';
import { startTestFront, type TestFront } from '../helpers/front.js';
import { memcachedStats, storedLogins } from '../helpers/memcached.js';
import { waitFor } from '../helpers/wait.js';

const USERS = Number(process.env['PLEXER_LOGIN_USERS'] ?? 12);
const COST = Number(process.env['PLEXER_LOGIN_COST'] ?? 4);
const AT_ONCE = 20;
const user = (i: number) => `login${String(i).padStart(4, '0')}`;
const users = Array.from({ length: USERS }, (_, i) => user(i));
let t: TestFront | undefined;

afterEach(async () => {
  await t?.close();
  t = undefined;
});

async function start(loginCache: boolean, loginChecker: boolean): Promise<TestFront> {
  const front = await startTestFront(async () => undefined, {
    front: { loginCache, authCacheTimeoutSeconds: 28_800, extra: { loginChecker } },
    // Users straight into the tables, with one hash (the same password): a check costs what COST costs.
    beforeStart: async (_stateDir, configPath) => {
      const hash = await hashPassword('pw', COST);
      const sql = createPool(adminConfig(loadConfig({ path: configPath })), { max: 1 });
      await sql.query(`INSERT INTO daemon_groups (name, settings_module) VALUES ('tenant1', 'tenants.settings_generic')`);
      await sql.query(
        `INSERT INTO users (name, password_hash, daemon_group, updated_at)
           SELECT 'login' || lpad(i::text, 4, '0'), $2, 'tenant1', now() - interval '1 hour' FROM generate_series(0, $1 - 1) i`,
        [USERS, hash],
      );
      await sql.end();
      return {};
    },
  });
  // Its first catch-up (no note yet: every user changed within the cache's life) done before anyone logs in.
  if (loginCache) await waitFor(() => /caught up changed=/.test(front.front.httpd.errorLog()), 20_000, 'plexer revoke');
  if (loginChecker) await waitFor(() => /checker started/.test(front.front.httpd.errorLog()), 20_000, 'plexer checker');
  return front;
}

function ask(front: TestFront, agent: http.Agent, i: number): Promise<number> {
  return new Promise((resolve) => {
    const request = http.get(
      {
        host: '127.0.0.1',
        port: front.front.httpd.port,
        path: '/app/whoami',
        agent,
        headers: { authorization: `Basic ${Buffer.from(`${user(i)}:pw`).toString('base64')}` },
      },
      (response) => {
        response.resume();
        response.on('end', () => resolve(response.statusCode ?? 0));
      },
    );
    request.on('error', () => resolve(0));
    request.setTimeout(120_000, () => request.destroy());
  });
}

// Every user once, AT_ONCE at a time: how long until all were answered, and how many were not 200.
// A new connection pool each time: connections kept alive across a graceful reload are closed by the old children.
async function everyone(front: TestFront): Promise<Round> {
  const agent = new http.Agent({ keepAlive: true, maxSockets: AT_ONCE });
  const started = performance.now();
  let next = 0;
  let failed = 0;
  let firstMs: number | undefined;
  await Promise.all(
    Array.from({ length: Math.min(AT_ONCE, USERS) }, async () => {
      for (let i = next++; i < USERS; i = next++) {
        if ((await ask(front, agent, i)) !== 200) failed++;
        firstMs ??= performance.now() - started;
      }
    }),
  );
  agent.destroy();
  return { ms: performance.now() - started, firstMs: firstMs ?? NaN, failed };
}

interface Round {
  ms: number;
  // Until the first answer (after a reload: the new generation of Apache, its helpers and daemons up).
  firstMs: number;
  failed: number;
}
const report: Record<string, { first: Round; warm: Round; afterReload: Round; cached: number }> = {};

describe('logged-in users and a graceful reload (real Apache)', () => {
  for (const [mode, loginCache, loginChecker] of [
    ['shared memory', false, false],
    ['memcached', true, false],
    ['memcached + checker', true, true],
  ] as const) {
    it(
      `${mode}: every user served again after a reload${loginCache ? ', none checked again' : ''}; figures printed`,
      async () => {
        t = await start(loginCache, loginChecker);
        const first = await everyone(t);
        expect(first.failed).toBe(0);
        // mod_authn_socache skips storing a login when another child holds its mutex (its trylock): with 20 at a
        // time a few users are not cached, and are checked again at their next request, reload or not.
        const stored = loginCache ? await storedLogins(t.front.loginCache!.socket, users) : new Map<string, string>();
        if (loginCache) expect(stored.size, await memcachedStats(t.front.loginCache!.socket)).toBeGreaterThan(USERS / 2);
        // The same requests again, logins cached, no reload: what serving them costs by itself.
        const warm = await everyone(t);
        expect(warm.failed).toBe(0);
        await t.front.httpd.graceful();
        const afterReload = await everyone(t);
        expect(afterReload.failed).toBe(0);
        // memcached: every login found again; nothing stored anew, so no password was checked.
        if (loginCache) {
          const after = await storedLogins(t.front.loginCache!.socket, users);
          for (const [key, cas] of stored) expect(after.get(key), key).toBe(cas);
        }
        report[mode] = { first, warm, afterReload, cached: stored.size };
        console.log(JSON.stringify({ mode, users: USERS, cost: COST, first, warm, afterReload, cached: stored.size }));
        if (process.env['PLEXER_LOGIN_REPORT'])
          writeFileSync(process.env['PLEXER_LOGIN_REPORT'], JSON.stringify({ users: USERS, cost: COST, atOnce: AT_ONCE, report }));
      },
      USERS * 2_000 + 120_000,
    );
  }
});
