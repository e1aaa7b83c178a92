// The Apache benchmark's runs: the store and helpers set up once, then routing (with propagation at the largest
// user count) and passwords, each variant its own Apache, rounds interleaved. Results go to ctx.results.
import type { ChildProcess } from 'node:child_process';
import { createHash } from 'node:crypto';
import { chmodSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import bcrypt from 'bcryptjs';
import pg from 'pg';
import { formatConfig } from '../../dist/config.js';
import { freePort } from '../../dist/demo/httpd.js';
import { writeFileAtomic } from '../../dist/files.js';
import { startLoginCacheServer } from '../../dist/demo/login-cache-server.js';
import { createDatabase, startPrivateCluster } from '../../dist/demo/private-cluster.js';
import { migrate } from '../../dist/store/migrate.js';
import { fail, log, pct, selected, type Running, type RunContext } from './apache-context.js';
import {
  basic,
  checkPasswords,
  checkRouting,
  get,
  loadUsers,
  mapQueryCalls,
  sh,
  shuffled,
  sleep,
  startDaemon,
  startVariants,
  stopChild,
  stopVariants,
  writeHeaders,
  wrk,
  type Answer,
} from './apache-probes.js';
import { GROUPS, groupOf, NODE_MAP, passwordVariants, PASSWORD, PY_MAP, routingVariants, WSGI_APP, type Env } from './apache-variants.js';
import { writeWrkScript, type WrkResult } from './wrk.js';

// What every step shares once the store is up.
interface Setup {
  env: Env;
  script: string; // wrk's Lua script
  sql: pg.Client;
  hash: string; // one cost-5 bcrypt hash for every user: loading stays fast
  syncConf: string;
  authdConf: string;
}

export async function runBench(ctx: RunContext): Promise<void> {
  const dir = mkdtempSync('/tmp/plexer-ab-');
  // plexer lockout's lock files on tmpfs, as the generated default keeps them (/run/plexer/locks).
  const locks = mkdtempSync('/dev/shm/plexer-ab-');
  try {
    chmodSync(locks, 0o711);
    const setup = await setUp(ctx, dir, join(locks, 'locks'));
    await routing(ctx, setup);
    await passwords(ctx, setup);
    await setup.sql.end();
  } finally {
    await stopVariants(ctx).catch((e: Error) => log(`stop: ${e.message}`));
    await stopChild(ctx.live.sync);
    await stopChild(ctx.live.authd);
    await stopChild(ctx.live.fcgiMin);
    await ctx.live.loginCache?.stop();
    await ctx.live.cluster?.stop().catch((e: Error) => log(`cluster stop: ${e.message}`));
    if (!ctx.options.keep) rmSync(dir, { recursive: true, force: true });
    rmSync(locks, { recursive: true, force: true });
  }
}

async function setUp(ctx: RunContext, dir: string, lockDir: string): Promise<Setup> {
  const o = ctx.options;
  chmodSync(dir, 0o755);
  const app = join(dir, 'app');
  mkdirSync(app, { mode: 0o755 });
  chmodSync(app, 0o755);
  writeFileSync(join(app, 'bench.wsgi'), WSGI_APP, { mode: 0o644 });
  writeFileSync(join(app, 'map.py'), PY_MAP, { mode: 0o644 });
  writeFileSync(join(app, 'map.cjs'), NODE_MAP, { mode: 0o644 });
  writeFileSync(join(app, '401.html'), '<!doctype html><title>401</title><p>Sign-in required.</p>\n', { mode: 0o644 });
  mkdirSync(join(dir, 'docroot'), { mode: 0o755 });
  const mapDir = join(dir, 'maps');
  mkdirSync(mapDir);
  chmodSync(mapDir, 0o755);
  const script = join(dir, 'rot.lua');
  writeWrkScript(script);

  log(`temp dir ${dir}; users ${o.userCounts.join(',')}; ${o.rounds} rounds of ${o.durationS} s; wrk -t${o.threads} -c${o.connections}`);
  const cluster = await startPrivateCluster({ dir: join(dir, 'pg') });
  ctx.live.cluster = cluster;
  // pg_stat_statements counts the map's queries (see mapQueryCalls).
  {
    const c = new pg.Client({ connectionString: cluster.url });
    c.on('error', () => undefined);
    await c.connect();
    await c.query(`ALTER SYSTEM SET shared_preload_libraries = 'pg_stat_statements'`);
    await c.end();
    await cluster.stop();
    await cluster.start();
  }
  ctx.cpuRoots.postmaster = Number(readFileSync(join(cluster.dataDir, 'postmaster.pid'), 'utf8').split('\n')[0]);
  const url = await createDatabase(cluster, 'bench');
  const sql = new pg.Client({ connectionString: url, options: '-c search_path=plexer' });
  sql.on('error', (e: Error) => log(`store connection: ${e.message}`));
  await sql.connect();
  await migrate(sql, 'plexer');
  await sql.query('CREATE EXTENSION IF NOT EXISTS pg_stat_statements SCHEMA public');
  // A settings module per group: what the route map answers with the group.
  for (const g of GROUPS) await sql.query("INSERT INTO daemon_groups (name, settings_module) VALUES ($1, 'bench.settings_' || $1)", [g]);
  const hash = await bcrypt.hash(PASSWORD, 5);
  const pgVersion = (await sql.query('SHOW server_version')).rows[0].server_version as string;
  const apacheVersion = (await sh('/usr/sbin/apache2', ['-v'])).stdout.split('\n')[0]?.replace('Server version: ', '') ?? '?';
  const wsgiVersion = (await sh('dpkg-query', ['-W', '-f=${Version}', 'libapache2-mod-wsgi-py3'])).stdout;
  const wrkVersion = (await sh('wrk', ['--version'])).stdout.split('\n')[0]?.split(' ')[1] ?? '?';
  ctx.results.versions = `${apacheVersion} (prefork), mod_wsgi ${wsgiVersion}, Node ${process.version}, PostgreSQL ${pgVersion}, wrk ${wrkVersion}`;

  const conf = join(dir, 'plexer.conf');
  const maxUsers = Math.max(...o.userCounts);
  const values = { database_url: url, cache_max: maxUsers * 2 + 1000, cache_ttl_ms: 86400000, bcrypt_cost: 5 };
  writeFileAtomic(conf, formatConfig({ ...values, log_level: 'warn' }), { mode: 0o644 });
  // plexer sync logs at info ("maps rebuilt"): its own config file with log_level info.
  const syncConf = join(dir, 'sync.conf');
  writeFileAtomic(syncConf, formatConfig({ database_url: url, log_level: 'info' }), { mode: 0o644 });
  const authdConf = join(dir, 'authd.conf');
  writeFileAtomic(authdConf, formatConfig({ ...values, log_level: 'info' }), { mode: 0o644 });
  const authdPort = await freePort();
  let fcgiMinPort = await freePort();
  while (fcgiMinPort === authdPort) fcgiMinPort = await freePort();
  const env: Env = {
    dir,
    app,
    conf,
    dbdParams: `host=${cluster.host} port=${cluster.port} dbname=bench user=postgres`,
    txtMap: join(dir, 'group.txt'),
    mapDir,
    authDbm: join(dir, 'users.dbm'),
    bcryptFile: join(dir, 'bcrypt.htpasswd'),
    authdPort,
    fcgiMinPort,
    lockDir,
    loginCacheSocket: join(dir, 'logins', 'cache.sock'),
    checkerSocket: join(dir, 'checker.sock'),
  };
  return { env, script, sql, hash, syncConf, authdConf };
}

async function startSync(ctx: RunContext, s: Setup): Promise<ChildProcess> {
  const sync = await startDaemon(['sync', '--dir', s.env.mapDir, '--config', s.syncConf], /maps rebuilt/, 'plexer sync');
  ctx.live.sync = sync;
  ctx.cpuRoots.sync = sync.pid;
  return sync;
}

async function stopSync(ctx: RunContext): Promise<void> {
  await stopChild(ctx.live.sync);
  ctx.live.sync = undefined;
}

// The user → group files the txt:, dbm: (auth) and Python variants read, for users 1..n.
async function writeUserFiles(s: Setup, n: number): Promise<void> {
  const { env } = s;
  const lines: string[] = [];
  const authLines: string[] = [];
  const sha = `{SHA}${createHash('sha1').update(PASSWORD).digest('base64')}`;
  for (let i = 1; i <= n; i++) {
    lines.push(`u${i} ${groupOf(i)}`);
    authLines.push(`u${i} ${sha}`);
  }
  writeFileSync(env.txtMap, lines.join('\n') + '\n', { mode: 0o644 });
  writeFileSync(join(env.dir, 'users.txt'), authLines.join('\n') + '\n');
  rmSync(env.authDbm, { force: true });
  const dbm = await sh('/usr/sbin/httxt2dbm', ['-f', 'GDBM', '-i', join(env.dir, 'users.txt'), '-o', env.authDbm]);
  if (dbm.code !== 0) throw new Error(`httxt2dbm: ${dbm.stderr}`);
  chmodSync(env.authDbm, 0o644);
}

async function routing(ctx: RunContext, s: Setup): Promise<void> {
  const o = ctx.options;
  const maxUsers = Math.max(...o.userCounts);
  let loaded = 0;
  for (const N of o.userCounts) {
    log(`--- routing with ${N} users ---`);
    await loadUsers(s.sql, loaded + 1, N, s.hash);
    loaded = Math.max(loaded, N);
    await s.sql.query('ANALYZE users');
    await writeUserFiles(s, N);
    // plexer sync: (re)started so its first rebuild has all N users before Apache opens the file.
    await stopChild(ctx.live.sync);
    const t = performance.now();
    await startSync(ctx, s);
    ctx.results.notes.push(
      `plexer sync: first full rebuild with ${N} users took ${(performance.now() - t).toFixed(0)} ms (start to "maps rebuilt").`,
    );
    const headers = writeHeaders(
      join(s.env.dir, `h-rot-${N}.txt`),
      shuffled(N).map((i) => `u${i}`),
    );

    const running = await startVariants(ctx, s.env, selected(ctx, routingVariants(s.env)), `r${N}`);
    for (const r of running) await checkRouting(ctx, r, N);

    // Warm-up: every variant briefly (children, daemons, connections); the plexer map once over every user so
    // its shared cache holds them all (the steady state of users who come back).
    for (const r of running) await wrk(ctx, s.script, r, headers, { duration: 1 });
    for (const plexer of running.filter((r) => r.v.id.startsWith('plexer'))) {
      const beforeWarm = await mapQueryCalls(s.sql);
      const warm = await wrk(ctx, s.script, plexer, headers, { mode: 'once', duration: 600 });
      const afterWarm = await mapQueryCalls(s.sql);
      log(`${plexer.v.id} warm-up: ${warm.requests} requests, ${afterWarm - beforeWarm} store queries`);
    }

    const results = new Map<string, WrkResult[]>();
    let plexerRequests = 0;
    let plexerMisses = 0;
    for (let round = 0; round < o.rounds; round++) {
      const order = round % 2 === 0 ? running : [...running].reverse();
      for (const r of order) {
        const before = r.v.id === 'plexer' ? await mapQueryCalls(s.sql) : 0;
        const res = await wrk(ctx, s.script, r, headers, { cpuKey: `routing ${N} ${r.v.id}` });
        if (r.v.id === 'plexer') {
          plexerMisses += (await mapQueryCalls(s.sql)) - before;
          plexerRequests += res.requests;
        }
        results.set(r.v.id, [...(results.get(r.v.id) ?? []), res]);
        log(
          `round ${round + 1} ${r.v.id.padEnd(8)} ${res.rps.toFixed(0).padStart(6)} req/s p50 ${res.p50ms.toFixed(2)} ms p99 ${res.p99ms.toFixed(2)} ms`,
        );
      }
    }
    for (const r of running) {
      const rs = results.get(r.v.id) ?? [];
      ctx.results.rows.push({
        section: 'routing',
        id: r.v.id,
        label: r.v.label,
        users: String(N),
        rps: rs.map((x) => x.rps),
        p50: rs.map((x) => x.p50ms),
        p99: rs.map((x) => x.p99ms),
        ref: 'fixed',
        note:
          r.v.id === 'plexer'
            ? `cache hit ratio ${(100 * (1 - plexerMisses / Math.max(1, plexerRequests))).toFixed(2)} % (${plexerMisses} store queries in ${plexerRequests} requests, after a warm-up pass over all ${N} users)`
            : undefined,
      });
    }
    for (const r of running) await checkRouting(ctx, r, N);

    if (N === maxUsers && ['plexer', 'dbd', 'fastdbd', 'dbm'].every((id) => running.some((r) => r.v.id === id))) {
      await propagation(ctx, s, running, N);
    }
    await stopVariants(ctx);
  }
  await stopSync(ctx);
}

// UPDATE … COMMIT of a user's group -> first request served by the new group, per kind of map.
async function propagation(ctx: RunContext, s: Setup, running: Running[], N: number): Promise<void> {
  log('--- propagation ---');
  const byId = (id: string) => running.find((r) => r.v.id === id)!;
  // plexer sync rebuilds on every NOTIFY: stopped while the others are measured, so its rebuilds do not
  // compete for the 2 cores.
  await stopSync(ctx);
  let moveIndex = 0;
  const measureMoves = async (id: string, moves: number, limitMs: number) => {
    const r = byId(id);
    const times: number[] = [];
    for (let k = 0; k < moves; k++) {
      const i = 10 + 4 * moveIndex++; // users in t3 (i % 4 = 2), moved to t1/t2 and never back
      const user = `u${i}`;
      const target = GROUPS[k % 2]!;
      const pre = await get(r.httpd.port, '/app/', basic(user));
      if (pre.group !== groupOf(i)) fail(ctx, `${id}: ${user} served by ${pre.group} before its move (want ${groupOf(i)})`);
      await s.sql.query('UPDATE users SET daemon_group = $2 WHERE name = $1', [user, target]);
      const committed = performance.now();
      let a: Answer;
      for (;;) {
        a = await get(r.httpd.port, '/app/', basic(user));
        if (a.group === target) break;
        if (performance.now() - committed > limitMs) break;
        await sleep(1);
      }
      const ms = performance.now() - committed;
      if (a.group !== target) fail(ctx, `${id}: ${user} still served by ${a.group} ${ms.toFixed(0)} ms after its move to ${target}`);
      times.push(ms);
    }
    return times;
  };
  const rows = ctx.results.propagation;
  const row = (label: string, times: number[], note: string) =>
    rows.push([
      label,
      String(times.length),
      `${pct(times, 50).toFixed(1)} ms`,
      `${pct(times, 99).toFixed(1)} ms`,
      `${Math.max(...times).toFixed(1)} ms`,
      note,
    ]);
  row('`plexer map group` (LISTEN/NOTIFY)', await measureMoves('plexer', ctx.options.moves, 10_000), 'poll every ~1 ms from COMMIT');
  row('`dbd:` (query per lookup)', await measureMoves('dbd', ctx.options.moves, 10_000), 'immediate by construction');
  // fastdbd: warm several children's caches with a user, move it, sample on fresh connections.
  {
    const r = byId('fastdbd');
    const i = 10 + 4 * moveIndex++;
    const user = `u${i}`;
    for (let k = 0; k < 40; k++) await get(r.httpd.port, '/app/', basic(user));
    await s.sql.query('UPDATE users SET daemon_group = $2 WHERE name = $1', [user, 't1']);
    await sleep(1000);
    let stale = 0;
    for (let k = 0; k < 40; k++) if ((await get(r.httpd.port, '/app/', basic(user))).group !== 't1') stale++;
    rows.push([
      '`fastdbd:` (per-child cache)',
      '1',
      '—',
      '—',
      '—',
      `until restart: ${stale}/40 requests 1 s after the move still went to the old group (the children that had cached it)`,
    ]);
  }
  // plexer sync: restart (full rebuild), then moves; each move -> NOTIFY -> a full rebuild of all users.
  await startSync(ctx, s);
  const sm = await measureMoves('dbm', ctx.options.quick ? 1 : ctx.options.moves, 120_000);
  row('`dbm:` kept by `plexer sync`', sm, `each move rebuilds all ${N} users' files (httxt2dbm + fsync + rename)`);
}

async function passwords(ctx: RunContext, s: Setup): Promise<void> {
  const o = ctx.options;
  const out = ctx.results;
  const dir = s.env.dir;
  log('--- passwords ---');
  const cold = o.quick ? 4_000 : 100_000;
  await s.sql.query(
    `INSERT INTO users (name, password_hash, daemon_group) SELECT 'c' || i, $2, 't1' FROM generate_series(1, $1::integer) i`,
    [cold, s.hash],
  );
  const y = `$2y$${s.hash.slice(4)}`;
  const warmUsers = Array.from({ length: o.warmUsers }, (_, i) => `u${i + 1}`);
  writeFileSync(s.env.bcryptFile, warmUsers.map((u) => `${u}:${y}`).join('\n') + '\n', { mode: 0o644 });
  const warmHeaders = writeHeaders(join(dir, 'h-warm.txt'), warmUsers);
  const noHeaders = join(dir, 'h-none.txt');
  writeFileSync(noHeaders, '-\n');
  const headersOf = (id: string) => (id === 'none' ? noHeaders : warmHeaders);
  let coldNext = 1;
  const coldSlice = (n: number) => {
    const users = Array.from({ length: n }, (_, k) => `c${coldNext + k}`);
    coldNext += n;
    if (coldNext > cold + 1) throw new Error('out of cold users');
    return writeHeaders(join(dir, `h-cold-${coldNext}.txt`), users);
  };
  const authd = await startDaemon(
    ['authd', '--listen', `127.0.0.1:${s.env.authdPort}`, '--config', s.authdConf],
    / listening /,
    'plexer authd',
  );
  ctx.live.authd = authd;
  ctx.cpuRoots.authd = authd.pid;
  const fcgiMin = await startDaemon(
    [String(s.env.fcgiMinPort)],
    / listening /,
    'minimal FastCGI authorizer',
    fileURLToPath(new URL('./fcgi-min.js', import.meta.url)),
  );
  ctx.live.fcgiMin = fcgiMin;
  ctx.cpuRoots.fcgiMin = fcgiMin.pid;
  const loginCache = await startLoginCacheServer(dirname(s.env.loginCacheSocket));
  ctx.live.loginCache = loginCache;
  ctx.cpuRoots.loginCache = loginCache.pid;
  const variants = passwordVariants(s.env);
  out.passwordVariants = variants.map(({ id, label }) => ({ id, label }));
  const running = await startVariants(ctx, s.env, selected(ctx, variants), 'pw');
  for (const r of running) await checkPasswords(ctx, r);
  const cached = new Set(['dbd-socache', 'ext-socache', 'ext-socache-lockout', 'ext-memcache', 'ext-memcache-checker', 'authd']);
  // Warm-up: each caching variant once over the warm users.
  for (const r of running) {
    if (cached.has(r.v.id)) await wrk(ctx, s.script, r, warmHeaders, { mode: 'once', duration: 600 });
    else await wrk(ctx, s.script, r, headersOf(r.v.id), { duration: 1 });
  }
  const coldRes = new Map<string, WrkResult[]>();
  // Users per cold run: enough that no user is asked twice within a run at the expected rate.
  const coldPerRun: Record<string, number> = o.quick
    ? { 'dbd-socache': 800, 'ext-socache': 100, 'ext-socache-lockout': 100, 'ext-memcache': 100, 'ext-memcache-checker': 100, authd: 800 }
    : {
        'dbd-socache': 14_000,
        'ext-socache': 1_500,
        'ext-socache-lockout': 1_500,
        'ext-memcache': 1_500,
        'ext-memcache-checker': 2_000,
        authd: 12_000,
      };
  for (let round = 0; round < o.rounds; round++) {
    const order = round % 2 === 0 ? running : [...running].reverse();
    for (const r of order) {
      const res = await wrk(ctx, s.script, r, headersOf(r.v.id), { cpuKey: `passwords warm ${r.v.id}` });
      out.warm.set(r.v.id, [...(out.warm.get(r.v.id) ?? []), res]);
      log(
        `warm round ${round + 1} ${r.v.id.padEnd(12)} ${res.rps.toFixed(0).padStart(6)} req/s p50 ${res.p50ms.toFixed(2)} ms p99 ${res.p99ms.toFixed(2)} ms`,
      );
      if (cached.has(r.v.id)) {
        const n = coldPerRun[r.v.id]!;
        const c = await wrk(ctx, s.script, r, coldSlice(n), { cpuKey: `passwords cold ${r.v.id}` });
        if (c.requests > n) out.coldWrapped.push(`${r.v.id} round ${round + 1}: ${c.requests} requests over ${n} fresh users`);
        coldRes.set(r.v.id, [...(coldRes.get(r.v.id) ?? []), c]);
        log(
          `cold round ${round + 1} ${r.v.id.padEnd(12)} ${c.rps.toFixed(0).padStart(6)} req/s p50 ${c.p50ms.toFixed(2)} ms p99 ${c.p99ms.toFixed(2)} ms`,
        );
      }
    }
  }
  // Cold latency with one connection (no queueing): the cost of one first check.
  for (const r of running) {
    if (!cached.has(r.v.id)) continue;
    const n = r.v.id.startsWith('ext-') ? 200 : o.quick ? 500 : 3_000;
    const c = await wrk(ctx, s.script, r, coldSlice(n), { threads: 1, connections: 1, duration: o.quick ? 2 : 4 });
    if (c.requests > n) out.coldWrapped.push(`${r.v.id} latency run: ${c.requests} requests over ${n} fresh users`);
    out.coldLatency.set(r.v.id, c);
    log(`cold c1 ${r.v.id.padEnd(12)} p50 ${c.p50ms.toFixed(2)} ms p99 ${c.p99ms.toFixed(2)} ms`);
  }
  // Warm latency with one connection, for the same comparison.
  for (const r of running) {
    out.warmLatency.set(r.v.id, await wrk(ctx, s.script, r, headersOf(r.v.id), { threads: 1, connections: 1, duration: o.quick ? 1 : 3 }));
  }
  for (const r of running) await checkPasswords(ctx, r);
  // bcrypt alone (cost 5): bcryptjs in this process, what authd runs.
  for (let k = 0; k < (o.quick ? 20 : 200); k++) {
    const t = performance.now();
    await bcrypt.compare(PASSWORD, s.hash);
    out.bcryptMs.push(performance.now() - t);
  }
  for (const r of running) {
    const w = out.warm.get(r.v.id) ?? [];
    out.rows.push({
      section: 'passwords',
      id: r.v.id,
      label: `${r.v.label} — warm`,
      users: `${o.warmUsers} seen`,
      rps: w.map((x) => x.rps),
      p50: w.map((x) => x.p50ms),
      p99: w.map((x) => x.p99ms),
      ref: 'none',
    });
    const c = coldRes.get(r.v.id);
    if (c) {
      out.rows.push({
        section: 'passwords',
        id: `${r.v.id}-cold`,
        label: `${r.v.label} — cold`,
        users: 'never seen',
        rps: c.map((x) => x.rps),
        p50: c.map((x) => x.p50ms),
        p99: c.map((x) => x.p99ms),
        ref: 'none',
      });
    }
  }
  await stopVariants(ctx);
  await stopChild(authd);
  ctx.live.authd = undefined;
  await stopChild(fcgiMin);
  ctx.live.fcgiMin = undefined;
  await loginCache.stop();
  ctx.live.loginCache = undefined;
}
