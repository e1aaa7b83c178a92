// Many accounts over few slots, against a real Apache (issue "accounts": the bench's 1,000 accounts over 20 slots).
// Four phases, every answer checked to come from the asker's own account and database:
//   turns:    half again as many accounts as slots take turns, one request at a time (their logins cached after
//             the first round): what a binding costs by itself, back to back;
//   arrivals: a few of them keep asking while the others come back one every 1.5 s: bind + first page under load;
//   rotation: ACTIVE users at a time, each asking three times, then the next account of all of them: each first
//             request is also that user's first login (plexer authn, bcrypt);
//   creation: bound accounts keep asking while accounts are created with the CLI, then with plain SQL: no slot
//             restarts, Apache stays.
// The figures are printed, not asserted (a timed test is a benchmark's job): `npm run bench:pool` runs this at full
// size and reports them. Sizes: PLEXER_POOL_ACCOUNTS (default 24), PLEXER_POOL_SLOTS (4), PLEXER_POOL_ACTIVE (3),
// PLEXER_POOL_SECONDS (8, for each of the first two phases), PLEXER_POOL_CREATE (4).
import http from 'node:http';
import { readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { listWsgiDaemons } from '../../src/apache/daemon-restart.js';
import { hashPassword } from '../../src/password.js';
import { adminConfig, loadConfig } from '../../src/config.js';
import { createPool } from '../../src/store/connect.js';
import { cliOk, startTestFront, type TestFront } from '../helpers/front.js';
import { removePoolAccounts, testPoolPrefix } from '../helpers/pool.js';
import { waitFor } from '../helpers/wait.js';

const env = (name: string, fallback: number) => Number(process.env[`PLEXER_POOL_${name}`] ?? fallback);
const ACCOUNTS = env('ACCOUNTS', 24);
const SLOTS = env('SLOTS', 4);
const ACTIVE = env('ACTIVE', 3);
const SECONDS = env('SECONDS', 8);
const CREATE = env('CREATE', 4);
// How often an account comes back in the arrivals phase: a little more than a spare takes to be made ready.
const ARRIVAL_MS = 1_500;
const prefix = testPoolPrefix();
const account = (i: number) => `acct${String(i).padStart(4, '0')}`;
const user = (i: number) => `user${String(i).padStart(4, '0')}`;
let t: TestFront;

beforeAll(async () => {
  t = await startTestFront(async () => undefined, {
    // The default spares (one slot in eight; one at least here), made as soon as a binding takes a free slot (spare
    // idle 0): bindings find a fresh process ready. The creation phase starts with the spares ready, and no binding
    // happens in it: no slot may restart there.
    // Logins cached for an hour: the turns and arrivals measure a binding and a first page, not a login that expired
    // meanwhile (Apache's default here is 60 s, shorter than the turns phase).
    front: {
      authCacheTimeoutSeconds: 3_600,
      extra: { pool: { slots: SLOTS, prefix, waitSeconds: 30, spares: Math.max(1, Math.floor(SLOTS / 8)), spareIdleSeconds: 0 } },
    },
    // Accounts and users straight into the tables (as psql would): a thousand CLI runs would take minutes.
    beforeStart: async (_stateDir, configPath) => {
      const hash = await hashPassword('pw', 4);
      const sql = createPool(adminConfig(loadConfig({ path: configPath })), { max: 1 });
      await sql.query(
        `INSERT INTO daemon_groups (name, settings_module) SELECT 'acct' || lpad(i::text, 4, '0'), 'tenants.settings_generic' FROM generate_series(0, $1 - 1) i`,
        [ACCOUNTS],
      );
      await sql.query(
        `INSERT INTO users (name, password_hash, daemon_group) SELECT 'user' || lpad(i::text, 4, '0'), $2, 'acct' || lpad(i::text, 4, '0') FROM generate_series(0, $1 - 1) i`,
        [ACCOUNTS, hash],
      );
      await sql.end();
      return {};
    },
  });
}, 180_000);

afterAll(async () => {
  await t?.close();
  await removePoolAccounts(prefix);
});

interface Answer {
  status: number;
  ms: number;
  group?: string;
  database?: string;
  pid?: number;
}

const agent = new http.Agent({ keepAlive: true, maxSockets: 64 });
function ask(i: number): Promise<Answer> {
  const start = performance.now();
  return new Promise((resolve) => {
    const request = http.get(
      {
        host: '127.0.0.1',
        port: t.front.httpd.port,
        path: '/app/whoami',
        agent,
        headers: { authorization: `Basic ${Buffer.from(`${user(i)}:pw`).toString('base64')}` },
      },
      (response) => {
        let body = '';
        response.on('data', (chunk) => (body += chunk));
        response.on('end', () => {
          const ms = performance.now() - start;
          try {
            const w = JSON.parse(body) as { group: string; database: string; pid: number };
            resolve({ status: response.statusCode ?? 0, ms, group: w.group, database: w.database, pid: w.pid });
          } catch {
            resolve({ status: response.statusCode ?? 0, ms });
          }
        });
      },
    );
    request.on('error', () => resolve({ status: 0, ms: performance.now() - start }));
    request.setTimeout(60_000, () => request.destroy());
  });
}

const percentile = (values: number[], p: number) => {
  const sorted = [...values].sort((a, b) => a - b);
  return sorted[Math.min(sorted.length - 1, Math.floor((p / 100) * sorted.length))] ?? NaN;
};
const rssKiB = (pid: number) => Number(/^VmRSS:\s+(\d+)/m.exec(readFileSync(`/proc/${pid}/status`, 'utf8'))?.[1] ?? 0);
const slotDaemons = () => listWsgiDaemons(t.front.httpd.pid);

describe('many accounts over few slots (real Apache)', () => {
  it(
    'answers every request from its own account while the active set rotates and accounts are created; figures printed',
    async () => {
      // Every slot's fresh process, before any binding: what one daemon group per account would cost per account.
      const idle = await waitFor(() => (slotDaemons().length === SLOTS ? slotDaemons() : undefined), 20_000, 'every slot up');
      await new Promise((resolve) => setTimeout(resolve, 1_000));
      const idleSlotKiB = idle.map((d) => rssKiB(d.pid));
      const wrong: string[] = [];
      const check = (i: number, a: Answer) => {
        if (
          a.status === 200 &&
          (a.group !== account(i) || a.database !== join(t.front.apacheDir, 'data', account(i), `${account(i)}.sqlite3`))
        )
          wrong.push(`${user(i)} got ${a.group}`);
      };

      const lastPid = new Map<number, number>();
      // Phase 0: turns. The first round logs every user in and binds; after it, each turn that lands on a fresh
      // process (another pid than the account's last answer) is one binding.
      const turnAccounts = Math.min(ACCOUNTS, SLOTS + Math.max(2, Math.floor(SLOTS / 2)));
      const turnBinds: number[] = [];
      for (let i = 0; i < turnAccounts; i++) {
        const a = await ask(i);
        check(i, a);
        if (a.pid !== undefined) lastPid.set(i, a.pid);
      }
      const turnsUntil = performance.now() + SECONDS * 1000;
      for (let n = 0; performance.now() < turnsUntil; n++) {
        const i = n % turnAccounts;
        const a = await ask(i);
        check(i, a);
        if (a.status === 200 && lastPid.get(i) !== a.pid) turnBinds.push(a.ms);
        if (a.pid !== undefined) lastPid.set(i, a.pid);
      }

      // Phase 0b: arrivals under load. A few turn accounts keep asking (the load); every ARRIVAL_MS one of the
      // others, its login still cached from the turns, comes back to a slot taken in between: bind + first page.
      const loadAccounts = Array.from({ length: Math.min(4, turnAccounts - 2) }, (_, k) => k);
      const arrivers = Array.from({ length: turnAccounts - loadAccounts.length }, (_, k) => loadAccounts.length + k);
      const arrivals: number[] = [];
      const loadTimes: number[] = [];
      const arrivalsUntil = performance.now() + (SECONDS * 1000) / 2;
      const load = Promise.all(
        loadAccounts.map(async (i) => {
          while (performance.now() < arrivalsUntil) {
            const a = await ask(i);
            check(i, a);
            if (a.status === 200) loadTimes.push(a.ms);
          }
        }),
      );
      for (let n = 0; performance.now() < arrivalsUntil; n++) {
        const started = performance.now();
        const i = arrivers[n % arrivers.length]!;
        const a = await ask(i);
        check(i, a);
        if (a.status === 200 && lastPid.get(i) !== a.pid) arrivals.push(a.ms);
        if (a.pid !== undefined) lastPid.set(i, a.pid);
        await new Promise((resolve) => setTimeout(resolve, Math.max(0, ARRIVAL_MS - (performance.now() - started))));
      }
      await load;

      // Phase 1: the active set slides over every account; each asker asks a few times, then the next comes in.
      const binds: number[] = [];
      const steady: number[] = [];
      const other: number[] = [];
      let next = 0;
      const until = performance.now() + SECONDS * 1000;
      await Promise.all(
        Array.from({ length: ACTIVE }, async () => {
          while (performance.now() < until) {
            const i = turnAccounts + (next++ % (ACCOUNTS - turnAccounts));
            for (let k = 0; k < 3; k++) {
              const a = await ask(i);
              check(i, a);
              if (a.status !== 200) {
                other.push(a.status);
                continue;
              }
              (lastPid.get(i) === a.pid ? steady : binds).push(a.ms);
              lastPid.set(i, a.pid!);
            }
          }
        }),
      );
      const loadedSlotKiB = slotDaemons().map((d) => rssKiB(d.pid));

      // Phase 2: bound accounts keep asking (no more than slots, so none is evicted) while new accounts are created.
      const bound = [
        ...new Set(
          readFileSync(join(t.front.apacheDir, 'bindings.txt'), 'utf8')
            .split('\n')
            .filter((l) => l.startsWith('acct'))
            .map((l) => Number(l.slice(4, 8))),
        ),
      ];
      const apache = t.front.httpd.pid;
      // At most 12 at a time: the generated config lets one address hold 20 connections (mod_qos).
      const askers = bound.slice(0, 12);
      const measure = async (stop: () => boolean) => {
        const times: number[] = [];
        await Promise.all(
          askers.map(async (i) => {
            while (!stop()) {
              const a = await ask(i);
              check(i, a);
              if (a.status === 200) times.push(a.ms);
              else other.push(a.status);
            }
          }),
        );
        return times;
      };
      const quietUntil = performance.now() + 3_000;
      const quiet = await measure(() => performance.now() > quietUntil);
      // The spare the last binding asked for is ready by now; from here on no slot may restart.
      await waitFor(
        () =>
          JSON.parse(readFileSync(join(t.front.apacheDir, 'pool.json'), 'utf8')).slots.every(
            (x: { phase: string }) => x.phase !== 'emptying',
          ),
        10_000,
        'the spare ready',
      );
      const daemonsBefore = slotDaemons()
        .map((d) => d.pid)
        .sort();
      let creating = true;
      const created = (async () => {
        for (let n = 0; n < CREATE; n++) {
          await cliOk(t.cli, ['group', 'add', `newacct${n}`, '--settings', 'tenants.settings_generic']);
          await cliOk(t.cli, ['user', 'add', `newuser${n}`, '--group', `newacct${n}`, '--password-stdin'], 'pw\n');
        }
        creating = false;
      })();
      const during = await measure(() => !creating);
      await created;
      // The same with plain SQL, as psql would (each account and user in a statement of its own): plexer's own share
      // of a creation (the notifications, the maps' caches, the binder's rechecks), without 200 Node starts.
      const quietAgainUntil = performance.now() + 3_000;
      const quietAgain = await measure(() => performance.now() > quietAgainUntil);
      const sql = createPool(adminConfig(loadConfig({ path: t.configPath })), { max: 1 });
      let inserting = true;
      const inserted = (async () => {
        try {
          for (let n = 0; n < CREATE; n++) {
            await sql.query(`INSERT INTO daemon_groups (name, settings_module) VALUES ($1, 'tenants.settings_generic')`, [`sqlacct${n}`]);
            await sql.query(
              `INSERT INTO users (name, password_hash, daemon_group) SELECT $1, password_hash, $2 FROM users WHERE name = 'user0000'`,
              [`sqluser${n}`, `sqlacct${n}`],
            );
          }
        } finally {
          inserting = false;
          await sql.end();
        }
      })();
      const duringSql = await measure(() => !inserting);
      await inserted;
      const daemonsAfter = slotDaemons()
        .map((d) => d.pid)
        .sort();
      if (JSON.stringify(daemonsAfter) !== JSON.stringify(daemonsBefore)) {
        console.log(
          t.front.httpd
            .errorLog()
            .split('\n')
            .filter((l) => /wsgi:|binder|mpm/.test(l))
            .slice(-40)
            .join('\n'),
        );
      }
      expect(daemonsAfter).toEqual(daemonsBefore);
      expect(t.front.httpd.pid).toBe(apache);
      expect(wrong).toEqual([]);

      const report = {
        accounts: ACCOUNTS,
        slots: SLOTS,
        active: ACTIVE,
        seconds: SECONDS,
        created: CREATE,
        requests: binds.length + steady.length,
        turns: { accounts: turnAccounts, count: turnBinds.length, p50: percentile(turnBinds, 50), p99: percentile(turnBinds, 99) },
        arrivals: { gapMs: ARRIVAL_MS, count: arrivals.length, p50: percentile(arrivals, 50), p99: percentile(arrivals, 99) },
        arrivalLoad: {
          askers: loadAccounts.length,
          count: loadTimes.length,
          p50: percentile(loadTimes, 50),
          p99: percentile(loadTimes, 99),
        },
        notOk: other,
        wrong: wrong.length,
        bind: { count: binds.length, p50: percentile(binds, 50), p99: percentile(binds, 99) },
        steady: { count: steady.length, p50: percentile(steady, 50), p99: percentile(steady, 99) },
        quiet: { count: quiet.length, p50: percentile(quiet, 50), p99: percentile(quiet, 99) },
        duringCreation: { count: during.length, p50: percentile(during, 50), p99: percentile(during, 99) },
        quietAgain: { count: quietAgain.length, p50: percentile(quietAgain, 50), p99: percentile(quietAgain, 99) },
        duringSql: { count: duringSql.length, p50: percentile(duringSql, 50), p99: percentile(duringSql, 99) },
        memoryKiB: {
          idleSlotMean: idleSlotKiB.reduce((a, b) => a + b, 0) / Math.max(1, idleSlotKiB.length),
          poolLoaded: loadedSlotKiB.reduce((a, b) => a + b, 0),
        },
      };
      console.log(JSON.stringify(report));
      // What Apache said about the answers that were not 200.
      if (other.length > 0) {
        const said = t.front.httpd.errorLog().split('\n');
        console.log(
          said
            .filter((line) => /wsgi:error|proxy|binder (warn|error)|plexer\.wsgi/.test(line))
            .slice(-20)
            .join('\n'),
        );
      }
      if (process.env['PLEXER_POOL_REPORT']) writeFileSync(process.env['PLEXER_POOL_REPORT'], JSON.stringify(report));
      expect(binds.length).toBeGreaterThan(0);
    },
    2 * SECONDS * 1000 + CREATE * 3_000 + 120_000,
  );
});
