// PostgreSQL stops under a running Apache and comes back: users already seen keep being served (socache for
// the password, the map's stale cache for the group), nobody new gets in, every request is answered in bounded
// time, and everything recovers by itself, without restarting Apache.
import pg from 'pg';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startFront, type Front } from '../../src/demo/front.js';
import { freePort } from '../../src/demo/httpd.js';
import type { PrivateCluster } from '../../src/demo/private-cluster.js';
import { loadConfig } from '../../src/config.js';
import { storeOnOwnCluster, type OwnClusterStore } from '../helpers/own-cluster.js';
import { waitFor } from '../helpers/wait.js';

let cluster: PrivateCluster;
let front: Front;
let store: OwnClusterStore;
let sql: pg.Pool;

async function get(
  user: string,
  password: string,
): Promise<{ status: number; group?: string; ms: number; retryAfter: string | null; body: string }> {
  const started = performance.now();
  const response = await fetch(`${front.httpd.url}/app/whoami`, {
    headers: { authorization: `Basic ${Buffer.from(`${user}:${password}`).toString('base64')}` },
  });
  const body = await response.text();
  const ms = performance.now() - started;
  const retryAfter = response.headers.get('retry-after');
  return { status: response.status, ms, retryAfter, body, ...(response.status === 200 ? { group: JSON.parse(body).group } : {}) };
}

async function until(check: () => Promise<boolean>, limitMs: number, what: string): Promise<number> {
  const started = performance.now();
  await waitFor(check, limitMs, what, 100);
  return performance.now() - started;
}

beforeAll(async () => {
  store = await storeOnOwnCluster('pxo', 'outage');
  const { cli, configPath, dir, pg: s } = store;
  cluster = store.cluster;
  for (const g of ['tenant1', 'tenant2']) await cli(['group', 'add', g, '--settings', 'tenants.settings_generic']);
  await cli(['user', 'add', 'alice', '--group', 'tenant1', '--password-stdin'], 'alice-pw\n');
  await cli(['user', 'add', 'carol', '--group', 'tenant2', '--password-stdin'], 'carol-pw\n');
  sql = new pg.Pool({ host: s.host, port: s.port, database: s.database, user: s.user, options: '-c search_path=plexer', max: 2 });
  sql.on('error', () => undefined);
  front = await startFront({
    stateDir: dir,
    configPath,
    config: loadConfig({ path: configPath }),
    port: await freePort(),
    authCacheTimeoutSeconds: 300,
  });
  await until(async () => (await get('alice', 'alice-pw')).status === 200, 15_000, 'alice served');
}, 120_000);

afterAll(async () => {
  await front?.stop();
  await sql?.end().catch(() => undefined);
  await store?.close();
});

describe('a lookup the store does not answer in time', () => {
  it('gives our 503 with Retry-After ("try again"), never the 403 of a user without a group', async () => {
    // alice's password is cached; her routing answer is dropped by a change to her group (NOTIFY clears the map's
    // cache), and the users table is locked, so the map's query cannot finish within its deadline.
    expect((await get('alice', 'alice-pw')).status).toBe(200);
    let answer: Awaited<ReturnType<typeof get>> | undefined;
    for (let attempt = 0; attempt < 5 && answer?.status !== 503; attempt++) {
      await sql.query(`UPDATE daemon_groups SET enabled = true WHERE name = 'tenant1'`);
      await new Promise((resolve) => setTimeout(resolve, 200)); // the notification's way to the map
      const locker = await sql.connect();
      try {
        await locker.query('BEGIN');
        await locker.query('LOCK TABLE users IN ACCESS EXCLUSIVE MODE');
        answer = await get('alice', 'alice-pw');
      } finally {
        await locker.query('ROLLBACK');
        locker.release();
      }
    }
    expect(answer!.status, answer!.body).toBe(503);
    expect(answer!.body).toContain('plexer-error:503');
    expect(answer!.retryAfter).toBe('5');
    // The access log says who and why: the map gave no answer, not "no group".
    await until(
      async () => / alice \[[^\]]+\] 503 .* reason=no-answer$/m.test(front.httpd.accessLog()),
      5_000,
      "alice's 503 in the access log, reason=no-answer",
    );
    // Once the store answers again, she is served.
    await until(async () => (await get('alice', 'alice-pw')).status === 200, 10_000, 'alice served again');
  }, 60_000);
});

describe('database outage under a real Apache', () => {
  it('keeps serving known users, refuses unknown ones in bounded time, and recovers by itself', async () => {
    const apachePid = front.httpd.pid;
    expect((await get('alice', 'alice-pw')).group).toBe('tenant1');
    await cluster.stop();

    const during = [];
    for (let i = 0; i < 10; i++) during.push(await get('alice', 'alice-pw'));
    expect(during.map((r) => `${r.status} ${r.group}`)).toEqual(Array(10).fill('200 tenant1'));
    // carol never logged in: her password cannot be checked, so she is refused (fails closed).
    const carol = await get('carol', 'carol-pw');
    expect(carol.status).toBe(401);
    const worst = Math.max(...during.map((r) => r.ms), carol.ms);
    console.log(`during the outage: alice served from caches, carol refused; slowest answer ${worst.toFixed(0)} ms`);
    expect(worst).toBeLessThan(3_500);
    expect(front.httpd.errorLog()).toMatch(/cannot check password; refusing/);

    await cluster.start();
    await sql.query(`UPDATE users SET daemon_group = 'tenant2' WHERE name = 'alice'`);
    const recovered = await until(
      async () => (await get('alice', 'alice-pw')).group === 'tenant2',
      20_000,
      'alice served by tenant2 after the restart',
    );
    console.log(`after the restart: alice's move served ${recovered.toFixed(0)} ms after the commit`);
    expect((await get('carol', 'carol-pw')).group).toBe('tenant2');
    expect(front.httpd.pid).toBe(apachePid);
    expect(() => process.kill(apachePid, 0)).not.toThrow();
  }, 120_000);
});
