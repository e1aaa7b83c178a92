// The Apache benchmark's instruments: an HTTP probe, the correctness checks, wrk with CPU accounting, the
// helper daemons and the store's users.
import { execFile, spawn, type ChildProcess } from 'node:child_process';
import { chmodSync, mkdirSync, writeFileSync } from 'node:fs';
import http from 'node:http';
import { join } from 'node:path';
import type pg from 'pg';
import { freePort, startHttpd } from '../../dist/demo/httpd.js';
import { fail, log, type RunContext, type Running } from './apache-context.js';
import { groupOf, NODE, PASSWORD, PLEXER, renderConfig, type Env, type Variant } from './apache-variants.js';
import { delta, isDescendant, snapshot, type Classifier } from './cpu.js';
import { runWrk, type WrkResult } from './wrk.js';

export const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));
export const basic = (user: string, password = PASSWORD) => `Basic ${Buffer.from(`${user}:${password}`).toString('base64')}`;

export function sh(cmd: string, args: string[], input?: string): Promise<{ code: number; stdout: string; stderr: string }> {
  return new Promise((resolve) => {
    const child = execFile(cmd, args, { maxBuffer: 64 * 1024 * 1024 }, (error, stdout, stderr) => {
      resolve({ code: error ? (typeof error.code === 'number' ? error.code : 1) : 0, stdout: String(stdout), stderr: String(stderr) });
    });
    if (input !== undefined) child.stdin?.end(input);
  });
}

export interface Answer {
  status: number;
  group: string;
  body: string;
}
// A fresh connection per probe: prefork hands each to whichever child accepts it, and an idle keep-alive
// connection closed by Apache (KeepAliveTimeout 2) cannot fail a probe.
export function get(port: number, path: string, auth: string | undefined): Promise<Answer> {
  return new Promise((resolve, reject) => {
    const req = http.get(
      { host: '127.0.0.1', port, path, agent: false, headers: auth ? { Authorization: auth } : {}, timeout: 30_000 },
      (res) => {
        let body = '';
        res.setEncoding('utf8');
        res.on('data', (c: string) => (body += c));
        res.on('end', () => resolve({ status: res.statusCode ?? 0, group: String(res.headers['x-group'] ?? ''), body }));
      },
    );
    req.on('timeout', () => req.destroy(new Error('timeout')));
    req.on('error', reject);
  });
}

export async function startVariants(ctx: RunContext, env: Env, variants: Variant[], phase: string): Promise<Running[]> {
  for (const v of variants) {
    const port = await freePort();
    const stateDir = join(env.dir, `h-${phase}-${v.id}`);
    mkdirSync(stateDir, { recursive: true });
    chmodSync(stateDir, 0o755);
    const httpd = await startHttpd({ config: renderConfig(env, v, port, stateDir), dir: stateDir });
    // Recorded as each starts, so the cleanup stops the ones started before a failing one.
    ctx.live.running.push({ v, httpd });
    log(`started ${v.id} on :${port} (pid ${httpd.pid})`);
  }
  return ctx.live.running;
}

export async function stopVariants(ctx: RunContext): Promise<void> {
  const running = ctx.live.running;
  ctx.live.running = [];
  for (const r of running) {
    const errors = r.httpd
      .errorLog()
      .split('\n')
      .filter((l) => /\[(error|crit|alert|emerg)\]|\berror\b.*AH/i.test(l) && !/caught SIGTERM|SIGTERM/.test(l));
    if (errors.length > 0) log(`${r.v.id}: ${errors.length} error-log lines, e.g. ${errors[0]}`);
    await r.httpd.stop();
  }
}

export async function checkRouting(ctx: RunContext, r: Running, users: number, waitMs = 0): Promise<void> {
  const sample = [1, 2, 3, 4, 5, Math.floor(users / 2), users - 1, users].filter((i, k, a) => i >= 1 && a.indexOf(i) === k);
  const until = Date.now() + waitMs;
  for (const i of sample) {
    const want = r.v.map === undefined ? 'pool' : groupOf(i);
    for (;;) {
      const a = await get(r.httpd.port, '/app/', basic(`u${i}`)).catch((e: Error) => ({ status: 0, group: '', body: e.message }));
      if (a.status === 200 && a.group === want && a.body.startsWith(`${want} u${i}`)) break;
      if (Date.now() < until) {
        await sleep(250);
        continue;
      }
      fail(ctx, `${r.v.id}: u${i} answered ${a.status} group=${a.group || '-'} body=${a.body.trim().slice(0, 80)} (want ${want})`);
      break;
    }
  }
  // A wrong password and an unknown user never reach an application.
  const wrong = await get(r.httpd.port, '/app/', basic('u1', 'wrong')).catch(() => ({ status: 0 }));
  if (wrong.status !== 401) fail(ctx, `${r.v.id}: wrong password answered ${wrong.status}`);
}

export async function checkPasswords(ctx: RunContext, r: Running): Promise<void> {
  const ok = await get(r.httpd.port, '/app/', basic('u1')).catch((e: Error) => ({ status: 0, group: '', body: e.message }));
  if (ok.status !== 200 || ok.group !== 'pool') fail(ctx, `${r.v.id}: u1 answered ${ok.status} ${ok.body.trim().slice(0, 80)}`);
  if (r.v.auth !== undefined && !r.v.acceptsAnyPassword) {
    for (const [user, pw] of [
      ['u2', 'wrong'],
      ['nosuchuser', PASSWORD],
    ] as const) {
      const a = await get(r.httpd.port, '/app/', basic(user, pw)).catch(() => ({ status: 0 }));
      if (a.status !== 401) fail(ctx, `${r.v.id}: ${user}/${pw} answered ${a.status}, want 401`);
    }
  }
}

// Where the CPU goes during a run: the variant's Apache tree (children, WSGI daemons, the prg: program),
// PostgreSQL, plexer authd (with its python3 sock_diag helper: a living child's time is in no cutime, so it is
// read from its own /proc/PID/stat), the minimal FastCGI authorizer, plexer sync, and with --login-cache
// memcached and plexer checker (a piped logger: Apache's child, counted apart).
export const CPU_CATEGORIES = ['apache', 'wsgi', 'map', 'postgres', 'authd', 'fcgi-min', 'sync', 'memcached', 'checker'] as const;
function classifierFor(ctx: RunContext, r: Running): Classifier {
  const roots = ctx.cpuRoots;
  return (p, all) => {
    if (isDescendant(p, r.httpd.pid, all)) {
      if (p.cmd.includes('(wsgi:')) return 'wsgi';
      if (/ map (group|route) |\/map\.(py|cjs) /.test(` ${p.cmd} `)) return 'map';
      if (/plexer checker /.test(p.cmd)) return 'checker';
      return 'apache';
    }
    if (roots.postmaster !== undefined && isDescendant(p, roots.postmaster, all)) return 'postgres';
    if (roots.authd !== undefined && isDescendant(p, roots.authd, all)) return 'authd';
    if (p.pid === roots.fcgiMin) return 'fcgi-min';
    if (p.pid === roots.sync) return 'sync';
    if (p.pid === roots.loginCache) return 'memcached';
    return undefined;
  };
}

export interface WrkRun {
  mode?: 'rot' | 'once';
  duration?: number;
  threads?: number;
  connections?: number;
  cpuKey?: string; // measured: its CPU is added to this key's totals
}

// `script`: the Lua script writeWrkScript wrote for this run.
export async function wrk(ctx: RunContext, script: string, r: Running, headerFile: string, run: WrkRun = {}): Promise<WrkResult> {
  const o = ctx.options;
  const classify = classifierFor(ctx, r);
  const before = run.cpuKey ? snapshot(classify) : undefined;
  const res = await runWrk({
    url: `http://127.0.0.1:${r.httpd.port}`,
    path: '/app/',
    headerFile,
    mode: run.mode ?? 'rot',
    threads: run.threads ?? o.threads,
    connections: run.connections ?? o.connections,
    durationS: run.duration ?? o.durationS,
    scriptPath: script,
  });
  if (before && run.cpuKey) {
    const d = delta(before, snapshot(classify));
    const t = ctx.cpuTotals.get(run.cpuKey) ?? { ms: new Map<string, number>(), requests: 0 };
    for (const [k, v] of d) t.ms.set(k, (t.ms.get(k) ?? 0) + v);
    t.requests += res.requests;
    ctx.cpuTotals.set(run.cpuKey, t);
  }
  if (res.non2xx > 0 || res.socketErrors > 0) {
    const share = res.non2xx / Math.max(1, res.requests);
    const msg = `${r.v.id}: ${res.non2xx} non-2xx of ${res.requests} responses, ${res.socketErrors} socket errors`;
    // A wrong answer under load is a wrong answer; a handful of timeouts on a loaded 2-core machine is noise.
    if (share > 0.001) fail(ctx, msg);
    else log(`note: ${msg}`);
  }
  return res;
}

export function writeHeaders(path: string, users: string[]): string {
  writeFileSync(path, users.map((u) => basic(u)).join('\n') + '\n');
  return path;
}

export function shuffled(n: number, seed = 12345): number[] {
  const a = Array.from({ length: n }, (_, i) => i + 1);
  let s = seed;
  for (let i = n - 1; i > 0; i--) {
    s = (s * 1103515245 + 12345) & 0x7fffffff;
    const j = s % (i + 1);
    [a[i], a[j]] = [a[j]!, a[i]!];
  }
  return a;
}

export async function loadUsers(sql: pg.Client, from: number, to: number, hash: string): Promise<void> {
  if (to < from) return;
  await sql.query(
    `INSERT INTO users (name, password_hash, daemon_group)
     SELECT 'u' || i, $3, 't' || (1 + i % 4) FROM generate_series($1::integer, $2::integer) i`,
    [from, to, hash],
  );
}

// pg_stat_statements counts the map's queries: cache misses = its query calls (the map is the only client
// issuing that exact query text).
export async function mapQueryCalls(sql: pg.Client): Promise<number> {
  const r = await sql.query(
    `SELECT coalesce(sum(calls), 0)::bigint AS calls FROM public.pg_stat_statements WHERE query LIKE '%AS value FROM users u JOIN daemon_groups%'`,
  );
  return Number(r.rows[0]?.calls ?? 0);
}

// `args`: plexer's arguments, or with `script` another Node program's.
export function startDaemon(args: string[], ready: RegExp, name: string, script = PLEXER): Promise<ChildProcess> {
  const child = spawn(NODE, [script, ...args], { env: {}, stdio: ['ignore', 'ignore', 'pipe'] });
  let logText = '';
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`${name} not ready after 120 s: ${logText}`)), 120_000);
    child.stderr!.setEncoding('utf8');
    child.stderr!.on('data', (d: string) => {
      logText += d;
      if (logText.length > 100_000) logText = logText.slice(-50_000);
      if (ready.test(logText)) {
        clearTimeout(timer);
        resolve(child);
      }
    });
    child.once('exit', (code) => {
      clearTimeout(timer);
      reject(new Error(`${name} exited ${code}: ${logText}`));
    });
  });
}

export async function stopChild(child: ChildProcess | undefined): Promise<void> {
  if (!child || child.exitCode !== null || child.signalCode !== null) return;
  const exited = new Promise((r) => child.once('exit', r));
  child.kill('SIGTERM');
  await Promise.race([exited, sleep(15_000)]);
  if (child.exitCode === null && child.signalCode === null) child.kill('SIGKILL');
}
