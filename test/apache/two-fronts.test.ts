// Several front ends, one store: two real Apache instances (own state directory, port, maps, WSGI daemons)
// over the same PostgreSQL store and the same plexer.conf. A change made with the CLI or with plain SQL reaches
// both within a second (measured and printed); stopping one does not disturb the other.
import { chmodSync, mkdtempSync } from 'node:fs';
import http from 'node:http';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startFront, type Front } from '../../src/demo/front.js';
import { freePort } from '../../src/demo/httpd.js';
import { formatConfig, loadConfig } from '../../src/config.js';
import { writeFileAtomic } from '../../src/files.js';
import { childrenOf } from '../helpers/churn.js';
import { waitFor } from '../helpers/wait.js';
import { connectionValues, freshStore, runPlexer, type TestStore } from '../helpers/plexer.js';

let store: TestStore;
let configPath: string;
let a: Front;
let b: Front;
let aStopped = false;

const cli = async (args: string[], input?: string) => {
  const r = await runPlexer(args, { configPath, input: input ?? 'pw\n' });
  if (r.code !== 0) throw new Error(`plexer ${args.join(' ')} failed (${r.code}): ${r.stderr}`);
  return r;
};

interface Reply {
  status: number;
  group?: string;
  sent: number;
  received: number;
  error?: string;
}

// One request on a fresh connection; never throws (a refused connection is status 0).
function whoami(front: Front, user: string): Promise<Reply> {
  const sent = performance.now();
  return new Promise((resolve) => {
    const headers = { authorization: `Basic ${Buffer.from(`${user}:${user}-pw`).toString('base64')}` };
    const request = http.get(`${front.httpd.url}/app/whoami`, { headers, agent: false }, (response) => {
      let body = '';
      response.setEncoding('utf8');
      response.on('data', (chunk: string) => (body += chunk));
      response.on('end', () => {
        const status = response.statusCode ?? 0;
        let group: string | undefined;
        if (status === 200) group = (JSON.parse(body) as { group: string }).group;
        resolve({ status, group, sent, received: performance.now() });
      });
    });
    request.setTimeout(20_000, () => request.destroy(new Error('timeout')));
    request.on('error', (error) => resolve({ status: 0, sent, received: performance.now(), error: String(error) }));
  });
}

const shows = (r: Reply, want: string | 403) => (want === 403 ? r.status === 403 : r.status === 200 && r.group === want);

// After a committed change (at `committed`), polls one front until it shows the new state. Returns the bounds on
// the propagation delay: `atMost` = when the first new-state response arrived, `atLeast` = when the last request
// still answered with the old state had been sent (both relative to the commit).
async function propagation(front: Front, user: string, want: string | 403, committed: number, limitMs = 5_000) {
  let atLeast = 0;
  for (;;) {
    const r = await whoami(front, user);
    if (shows(r, want)) return { atMost: r.received - committed, atLeast };
    atLeast = Math.max(atLeast, r.sent - committed);
    if (r.received - committed > limitMs)
      throw new Error(`${front.httpd.url}: ${user} still not ${want} after ${limitMs} ms (last ${r.status} ${r.group ?? ''})`);
  }
}

async function bothWithinASecond(what: string, user: string, want: string | 403, change: () => Promise<unknown>) {
  // Warm: both fronts have the user's password in mod_authn_socache and the current answer in their map.
  await Promise.all([whoami(a, user), whoami(b, user)]);
  await change();
  const committed = performance.now();
  const [pa, pb] = await Promise.all([propagation(a, user, want, committed), propagation(b, user, want, committed)]);
  const fmt = (p: { atMost: number; atLeast: number }) => `${p.atLeast.toFixed(1)}–${p.atMost.toFixed(1)} ms`;
  console.log(`${what}: front A ${fmt(pa)}, front B ${fmt(pb)} (between the last old answer's send and the first new answer)`);
  expect(pa.atMost).toBeLessThan(1_000);
  expect(pb.atMost).toBeLessThan(1_000);
}

beforeAll(async () => {
  store = await freshStore();
  const stateA = mkdtempSync('/tmp/pxe-');
  const stateB = mkdtempSync('/tmp/pxe-');
  for (const dir of [stateA, stateB]) chmodSync(dir, 0o755);
  // One plexer.conf for both front ends (readable by www-data), as two servers mounting the same /etc/plexer.
  configPath = join(stateA, 'plexer.conf');
  writeFileAtomic(configPath, formatConfig({ ...connectionValues(store.db.url), bcrypt_cost: 4 }), { mode: 0o644 });
  for (const g of ['tenant1', 'tenant2']) await cli(['group', 'add', g, '--settings', 'tenants.settings_generic']);
  await cli(['user', 'add', 'alice', '--group', 'tenant1', '--password-stdin'], 'alice-pw\n');
  await cli(['user', 'add', 'bob', '--group', 'tenant2', '--password-stdin'], 'bob-pw\n');
  await cli(['user', 'add', 'carol', '--group', 'tenant1', '--password-stdin'], 'carol-pw\n');
  const config = loadConfig({ path: configPath });
  a = await startFront({ stateDir: stateA, configPath, config, port: await freePort() });
  b = await startFront({ stateDir: stateB, configPath, config, port: await freePort() });
  // A map's first lookups may pass the default 50 ms deadline while its database connection is being made (our
  // 503, "try again"): each front end serves before the tests begin.
  for (const front of [a, b])
    await waitFor(async () => (await whoami(front, 'alice')).status === 200, 15_000, `${front.httpd.url} to serve`);
}, 120_000);

afterAll(async () => {
  if (a && !aStopped) await a.stop();
  await b?.stop();
  store?.sql.on('error', () => undefined);
  await store?.close();
});

describe('two front ends over one store', () => {
  it('serves the same users from both, each with its own Apache, maps and daemons', async () => {
    expect(a.httpd.port).not.toBe(b.httpd.port);
    expect(a.httpd.pid).not.toBe(b.httpd.pid);
    for (const front of [a, b]) {
      expect(await whoami(front, 'alice')).toMatchObject({ status: 200, group: 'tenant1' });
      expect(await whoami(front, 'bob')).toMatchObject({ status: 200, group: 'tenant2' });
    }
    // The default config's one map per front end (plexer map route).
    const mapsOf = (f: Front) =>
      childrenOf(f.httpd.pid)
        .filter((p) => / map route\b/.test(p.cmd))
        .map((p) => p.pid);
    expect(mapsOf(a)).toHaveLength(1);
    expect(mapsOf(b)).toHaveLength(1);
    expect(mapsOf(a)[0]).not.toBe(mapsOf(b)[0]);
  });

  it('serves a change made with the CLI from both within a second', async () => {
    await bothWithinASecond('CLI user move alice → tenant2', 'alice', 'tenant2', () =>
      cli(['user', 'move', 'alice', '--group', 'tenant2']),
    );
    await bothWithinASecond('CLI user add dave', 'dave', 'tenant1', () =>
      cli(['user', 'add', 'dave', '--group', 'tenant1', '--password-stdin'], 'dave-pw\n'),
    );
  });

  it('serves a change made with plain SQL from both within a second', async () => {
    await bothWithinASecond('SQL UPDATE bob → tenant1', 'bob', 'tenant1', () =>
      store.sql.query(`UPDATE users SET daemon_group = 'tenant1' WHERE name = 'bob'`),
    );
    await bothWithinASecond('SQL disable carol', 'carol', 403, () =>
      store.sql.query(`UPDATE users SET disabled = true WHERE name = 'carol'`),
    );
  });

  it('keeps serving from one front end while the other stops, and after', async () => {
    const bPid = b.httpd.pid;
    const bMaps = childrenOf(bPid)
      .filter((p) => / map /.test(p.cmd))
      .map((p) => `${p.pid}:${p.startTicks}`)
      .sort();
    // Two sequential clients on B (alice in tenant2, bob in tenant1 by now), fresh connections.
    const replies: Array<Reply & { user: string }> = [];
    let running = true;
    const client = async (user: string) => {
      while (running) replies.push({ user, ...(await whoami(b, user)) });
    };
    const clients = [client('alice'), client('bob')];
    await waitFor(() => replies.length >= 4, 10_000, 'B answering both clients before A stops');
    const stopStart = performance.now();
    const aPid = a.httpd.pid;
    await a.stop();
    aStopped = true;
    const stopEnd = performance.now();
    await waitFor(() => replies.filter((r) => r.sent > stopEnd).length >= 4, 10_000, 'B answering requests sent after A stopped');
    running = false;
    await Promise.all(clients);

    const during = replies.filter((r) => r.received >= stopStart && r.sent <= stopEnd).length;
    const after = replies.filter((r) => r.sent > stopEnd).length;
    const bad = replies.filter((r) => r.status !== 200 || r.group !== (r.user === 'alice' ? 'tenant2' : 'tenant1'));
    console.log(
      `front A stop took ${(stopEnd - stopStart).toFixed(0)} ms; front B answered ${replies.length} requests ` +
        `(${during} overlapping the stop, ${after} after it), ${bad.length} not 200 from the right group`,
    );
    expect(bad).toEqual([]);
    expect(during).toBeGreaterThan(0);
    expect(after).toBeGreaterThan(0);
    // stop() has returned; its last process may take a moment to be reaped.
    await waitFor(
      () => {
        try {
          process.kill(aPid, 0);
          return false;
        } catch {
          return true;
        }
      },
      5_000,
      "A's Apache process gone",
    );
    expect(() => process.kill(aPid, 0)).toThrow();
    expect((await whoami(a, 'alice')).status).toBe(0); // A is really gone (connection refused)
    // B's Apache and its maps are the same processes, and B still follows the store.
    expect(b.httpd.pid).toBe(bPid);
    expect(
      childrenOf(bPid)
        .filter((p) => / map /.test(p.cmd))
        .map((p) => `${p.pid}:${p.startTicks}`)
        .sort(),
    ).toEqual(bMaps);
    await whoami(b, 'dave');
    await cli(['user', 'move', 'dave', '--group', 'tenant2']);
    const committed = performance.now();
    const p = await propagation(b, 'dave', 'tenant2', committed);
    console.log(`after A stopped, CLI move reached B in ≤ ${p.atMost.toFixed(1)} ms`);
    expect(p.atMost).toBeLessThan(1_000);
  }, 60_000);
});
