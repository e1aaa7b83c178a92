// npm run bench:fronts [-- --fronts N --rate R --seconds S --users U --traffic T --settings-every K --no-sync
//                         --max-connections M --quick --json FILE]
// Many front ends on one PostgreSQL, without Apache: each simulated front end runs what a real one would run
// against the store — `plexer map group`, `plexer map settings`, `plexer sync` and `plexer authd` — all as
// separate processes started the way Apache and systemd start them (bare environment, a config file). The maps
// are driven over stdin/stdout one key at a time, as mod_rewrite does under its lock. After an idle baseline,
// users are moved and groups' settings changed with plain SQL at a steady rate, and every front end's map is
// asked for each changed key until it answers the new value. Reported: PostgreSQL connections held per
// application_name, propagation COMMIT → answer over all front ends, PostgreSQL CPU per change (from /proc,
// baseline subtracted), the helpers' CPU and RSS. Every front end must see every change: a change a front end
// never answers within MISS_AFTER_MS fails the run (exit 1). --no-sync leaves out `plexer sync`: a front end
// routing with prg: maps alone, as the default generated config does.
//
// Must run as root: authd answers only Apache's user or root, and sync writes files for group www-data.
// Prints a Markdown table (bench/RESULTS.md, "Many front ends"). --quick: 3 front ends for 3 s, a smoke test.
import { machine, resultsTable } from './results-table.js';
import { spawn, type ChildProcess } from 'node:child_process';
import { existsSync, mkdirSync, mkdtempSync, openSync, closeSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import net from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';
import bcrypt from 'bcryptjs';
import pg from 'pg';
import { formatConfig } from '../../dist/config.js';
import { coerceError } from '../../dist/errors.js';
import { createDatabase, startPrivateCluster, type PrivateCluster } from '../../dist/demo/private-cluster.js';
import { writeFileAtomic } from '../../dist/files.js';
import { SECRET_PARAM } from '../../dist/authd/secret.js';
import { authorizerRequest } from '../../dist/fastcgi/client.js';
import { ANSWER_MARK } from '../../dist/protocol/rewrite-map.js';
import { isDescendant, processes, type ProcInfo } from './cpu.js';

const ROOT = fileURLToPath(new URL('../../', import.meta.url));
const PLEXER = join(ROOT, 'bin/plexer');
const TICK_MS = 10;
const GROUPS = 20;
const PASSWORD = 'bench-password';
const POLL_MS = 1;
const MISS_AFTER_MS = 10_000;

const { values: opts } = parseArgs({
  options: {
    quick: { type: 'boolean', default: false },
    fronts: { type: 'string' },
    rate: { type: 'string' },
    seconds: { type: 'string' },
    users: { type: 'string' },
    traffic: { type: 'string' },
    'settings-every': { type: 'string' },
    'max-connections': { type: 'string' },
    'no-sync': { type: 'boolean', default: false },
    json: { type: 'string' },
  },
});
const quick = opts.quick!;
const FRONTS = positiveInt('fronts', opts.fronts ?? (quick ? '3' : '20'));
const RATE = positiveInt('rate', opts.rate ?? (quick ? '10' : '20'));
const SECONDS = positiveInt('seconds', opts.seconds ?? (quick ? '3' : '60'));
const USERS = positiveInt('users', opts.users ?? (quick ? '200' : '1000'));
// Background lookups per front end per second (random users), so that cache refills after invalidations cost
// what they cost under real traffic.
const TRAFFIC = positiveInt('traffic', opts.traffic ?? '50');
// Every Kth change is a settings change (0: none). One empties every group map's cache (src/lookup/invalidation.ts),
// so they are rarer than user moves, as in real life.
const SETTINGS_EVERY = opts['settings-every'] === '0' ? 0 : positiveInt('settings-every', opts['settings-every'] ?? '10');
const BASELINE_SECONDS = quick ? 1 : 10;
const POOL_MAX = 4;
const WITH_SYNC = !opts['no-sync'];
const HELPER_KINDS = ['map group', 'map settings', ...(WITH_SYNC ? ['sync'] : []), 'authd'] as const;
type HelperKind = (typeof HELPER_KINDS)[number];
// The most a front end may hold (bench/README.md, "Many front ends"): each map its pool and a LISTEN, sync a LISTEN and a
// rebuild connection, authd its pool and two LISTENs (changes, lockouts).
const BUDGET_PER_FRONT = 2 * (POOL_MAX + 1) + (WITH_SYNC ? 2 : 0) + POOL_MAX + 2;
// Room for the budget of every front end, the bench's own connections and superuser_reserved_connections (3),
// unless told otherwise: too few slots and the maps' reads fail (they answer stale), which --max-connections shows.
const MAX_CONNECTIONS = positiveInt('max-connections', opts['max-connections'] ?? String(FRONTS * BUDGET_PER_FRONT + 10));

function positiveInt(name: string, text: string): number {
  const n = Number(text);
  if (!Number.isInteger(n) || n < 1) {
    console.error(`bench:fronts: --${name} must be a positive integer, got "${text}"`);
    process.exit(2);
  }
  return n;
}

const answerNaming = (key: string, value: string) => `${ANSWER_MARK}${key}=${value}`;
const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

function percentile(sorted: number[], p: number): number {
  return sorted.length === 0 ? NaN : sorted[Math.min(sorted.length - 1, Math.floor((p / 100) * sorted.length))]!;
}

async function waitUntil(what: string, timeoutMs: number, condition: () => boolean | Promise<boolean>): Promise<void> {
  const until = Date.now() + timeoutMs;
  while (!(await condition())) {
    if (Date.now() > until) throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}`);
    await sleep(50);
  }
}

type Kind = 'group' | 'settings';

// One RewriteMap prg: pipe: one key written, one answer read, the next key only then (mod_rewrite's lock).
class MapPipe {
  readonly child: ChildProcess;
  private buffer = '';
  private waiting: Array<(line: string) => void> = [];
  private queue: Promise<unknown> = Promise.resolve();

  constructor(kind: Kind, configPath: string, stderrFd: number) {
    this.child = spawn(process.execPath, [PLEXER, 'map', kind, '--config', configPath], { env: {}, stdio: ['pipe', 'pipe', stderrFd] });
    this.child.stdout!.setEncoding('latin1');
    this.child.stdout!.on('data', (chunk: string) => {
      this.buffer += chunk;
      for (let nl = this.buffer.indexOf('\n'); nl !== -1; nl = this.buffer.indexOf('\n')) {
        const line = this.buffer.slice(0, nl);
        this.buffer = this.buffer.slice(nl + 1);
        this.waiting.shift()?.(line);
      }
    });
  }

  ask(key: string): Promise<string> {
    const answer = this.queue.then(
      () =>
        new Promise<string>((resolve) => {
          this.waiting.push(resolve);
          this.child.stdin!.write(`${key}\n`);
        }),
    );
    this.queue = answer;
    return answer;
  }
}

interface Front {
  index: number;
  maps: Record<Kind, MapPipe>;
  helpers: Map<HelperKind, ChildProcess>;
  authdPort: number;
  mapDir: string;
  logs: Record<'group' | 'settings' | 'sync' | 'authd', string>;
  secret: string;
}

interface Change {
  kind: Kind;
  key: string;
  value: string;
  committedAt: number;
  // Milliseconds from COMMIT to the front end's first answer naming the new value; undefined = never seen.
  seenAfterMs: Array<number | undefined>;
}

async function freePort(): Promise<number> {
  return new Promise((resolve) => {
    const server = net.createServer().listen(0, '127.0.0.1', () => {
      const { port } = server.address() as net.AddressInfo;
      server.close(() => resolve(port));
    });
  });
}

function runPlexer(args: string[]): Promise<void> {
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, [PLEXER, ...args], { env: {}, stdio: ['ignore', 'inherit', 'inherit'] });
    child.once('exit', (code) => (code === 0 ? resolve() : reject(new Error(`plexer ${args.join(' ')} exited ${code}`))));
  });
}

function rssKiB(pid: number | undefined): number {
  const status = readFileSync(`/proc/${pid}/status`, 'utf8');
  return Number(/VmRSS:\s+(\d+)/.exec(status)![1]);
}

async function startFront(index: number, dir: string, configPath: string, secretFile: string): Promise<Front> {
  const frontDir = join(dir, `front${index}`);
  const mapDir = join(frontDir, 'maps');
  mkdirSync(mapDir, { recursive: true });
  const logs = {
    group: join(frontDir, 'map-group.log'),
    settings: join(frontDir, 'map-settings.log'),
    sync: join(frontDir, 'sync.log'),
    authd: join(frontDir, 'authd.log'),
  };
  const fds = Object.fromEntries(Object.entries(logs).map(([k, path]) => [k, openSync(path, 'a')])) as Record<keyof typeof logs, number>;
  const authdPort = await freePort();
  const maps = { group: new MapPipe('group', configPath, fds.group), settings: new MapPipe('settings', configPath, fds.settings) };
  const helpers = new Map<HelperKind, ChildProcess>([
    ['map group', maps.group.child],
    ['map settings', maps.settings.child],
  ]);
  if (WITH_SYNC) {
    helpers.set(
      'sync',
      spawn(process.execPath, [PLEXER, 'sync', '--dir', mapDir, '--config', configPath], {
        env: {},
        stdio: ['ignore', 'ignore', fds.sync],
      }),
    );
  }
  helpers.set(
    'authd',
    spawn(
      process.execPath,
      [PLEXER, 'authd', '--listen', `127.0.0.1:${authdPort}`, '--apache-user', 'root', '--secret-file', secretFile, '--config', configPath],
      {
        env: {},
        stdio: ['ignore', 'ignore', fds.authd],
      },
    ),
  );
  const front: Front = {
    index,
    maps,
    helpers,
    authdPort,
    mapDir,
    logs,
    secret: /PLEXER_AUTHD_SECRET\s+(\S+)/.exec(readFileSync(secretFile, 'utf8'))![1]!,
  };
  for (const fd of Object.values(fds)) closeSync(fd);
  return front;
}

function authCheck(front: Front, user: string): Promise<number> {
  return authorizerRequest(
    { host: '127.0.0.1', port: front.authdPort },
    {
      FCGI_APACHE_ROLE: 'AUTHENTICATOR',
      REMOTE_USER: user,
      REMOTE_PASSWD: PASSWORD,
      REMOTE_ADDR: '127.0.0.1',
      [SECRET_PARAM]: front.secret,
    },
    30_000,
  ).then((answer) => answer.status);
}

async function waitReady(front: Front, expectGroup: string): Promise<void> {
  const name = `front ${front.index}`;
  await waitUntil(
    `${name}'s group map to answer user1`,
    60_000,
    async () => (await front.maps.group.ask('user1')) === answerNaming('user1', expectGroup),
  );
  await waitUntil(
    `${name}'s settings map to answer tenant1`,
    60_000,
    async () => (await front.maps.settings.ask('tenant1')) === answerNaming('tenant1', 'tenants.t1.v0'),
  );
  if (WITH_SYNC) await waitUntil(`${name}'s sync to write group.map`, 60_000, () => existsSync(join(front.mapDir, 'group.map')));
  await waitUntil(`${name}'s authd to listen`, 60_000, () => / listening /.test(readFileSync(front.logs.authd, 'utf8')));
  const status = await authCheck(front, 'user1');
  if (status !== 200) throw new Error(`${name}'s authd answered ${status} to a right password (see ${front.logs.authd})`);
}

// PostgreSQL's processes: the postmaster and its children (a backend's CPU lands in the postmaster's cutime
// once it exits, so connections closed during a window are still counted).
function postgresPids(cluster: PrivateCluster, all: ProcInfo[]): Map<number, ProcInfo> {
  const postmaster = Number(readFileSync(join(cluster.dataDir, 'postmaster.pid'), 'utf8').split('\n', 1)[0]);
  const byPid = new Map(all.map((p) => [p.pid, p]));
  return new Map(all.filter((p) => isDescendant(p, postmaster, byPid)).map((p) => [p.pid, p]));
}

interface CpuSample {
  at: number;
  postgres: Map<number, ProcInfo>;
  helpers: Map<HelperKind, number>; // ticks summed over front ends (httxt2dbm runs land in sync's cutime)
  machine: { busy: number; total: number }; // /proc/stat jiffies, all cores
}

function machineJiffies(): { busy: number; total: number } {
  const fields = readFileSync('/proc/stat', 'utf8').split('\n', 1)[0]!.trim().split(/\s+/).slice(1, 9).map(Number);
  const total = fields.reduce((a, b) => a + b, 0);
  return { busy: total - fields[3]! - fields[4]!, total }; // idle and iowait are not busy
}

function sampleCpu(cluster: PrivateCluster, fronts: Front[]): CpuSample {
  const all = processes();
  const byPid = new Map(all.map((p) => [p.pid, p]));
  const helpers = new Map<HelperKind, number>();
  for (const front of fronts) {
    for (const [kind, child] of front.helpers) helpers.set(kind, (helpers.get(kind) ?? 0) + (byPid.get(child.pid!)?.ticks ?? 0));
  }
  return { at: performance.now(), postgres: postgresPids(cluster, all), helpers, machine: machineJiffies() };
}

function postgresTicks(before: CpuSample, after: CpuSample): number {
  let ticks = 0;
  for (const [pid, p] of after.postgres) ticks += p.ticks - (before.postgres.get(pid)?.ticks ?? 0);
  return ticks;
}

async function main(): Promise<void> {
  if (process.getuid?.() !== 0) {
    console.error("bench:fronts: run as root (authd answers only Apache's user or root; sync writes files for group www-data)");
    process.exit(2);
  }
  const started = performance.now();
  const dir = mkdtempSync(join(tmpdir(), 'plexer-bench-fronts-'));
  const cluster = await startPrivateCluster({ dir: join(dir, 'pg') });
  const fronts: Front[] = [];
  let driver: pg.Pool | undefined;
  let failed = false;
  const stopAll = async () => {
    const exits = fronts
      .flatMap((f) => [...f.helpers.values()])
      .filter((c) => c.exitCode === null && c.signalCode === null)
      .map((child) => {
        const exited = new Promise((resolve) => child.once('exit', resolve));
        child.kill('SIGTERM');
        return exited;
      });
    await Promise.all(exits);
  };
  try {
    // postgresql.auto.conf is read after the private cluster's own settings file, so this wins; needs a restart.
    const superuser = new pg.Client({ connectionString: cluster.url });
    await superuser.connect();
    await superuser.query(`ALTER SYSTEM SET max_connections = ${MAX_CONNECTIONS}`);
    await superuser.end();
    await cluster.stop();
    await cluster.start();
    const url = await createDatabase(cluster, 'bench');
    const configPath = join(dir, 'plexer.conf');
    // The helpers connect as a read-only role, as installed (apache/INSTALL.md, "Least privilege in PostgreSQL").
    const values = {
      pg_host: cluster.host,
      pg_port: cluster.port,
      pg_database: 'bench',
      pg_user: 'plexer_helper',
      admin_pg_user: cluster.superuser,
      pool_max: POOL_MAX,
      bcrypt_cost: 4,
    };
    writeFileAtomic(configPath, formatConfig(values), { mode: 0o644 });
    await runPlexer(['db', 'migrate', '--helper-role', 'plexer_helper', '--login', '--config', configPath]);

    const sql = new pg.Pool({ connectionString: url, options: '-c search_path=plexer', max: 3, application_name: 'bench-driver' });
    driver = sql;
    // Idle clients see the cluster's shutdown at the end as an error event, which must not end the bench.
    sql.on('error', () => undefined);
    const hash = await bcrypt.hash(PASSWORD, 4);
    await sql.query(
      `INSERT INTO daemon_groups (name, settings_module) SELECT 'tenant' || i, 'tenants.t' || i || '.v0' FROM generate_series(1, $1::integer) i`,
      [GROUPS],
    );
    await sql.query(
      `INSERT INTO users (name, password_hash, daemon_group)
       SELECT 'user' || i, $2, 'tenant' || (1 + i % $3::integer) FROM generate_series(1, $1::integer) i`,
      [USERS, hash, GROUPS],
    );
    const groupOf = new Map<string, string>();
    for (let i = 1; i <= USERS; i++) groupOf.set(`user${i}`, `tenant${1 + (i % GROUPS)}`);
    const settingsOf = new Map<string, string>();
    for (let i = 1; i <= GROUPS; i++) settingsOf.set(`tenant${i}`, `tenants.t${i}.v0`);

    log(`starting ${FRONTS} front ends (${HELPER_KINDS.join(', ')} each) on one PostgreSQL`);
    const secretFile = join(dir, 'authd-secret.conf');
    await runPlexer(['authd', '--new-secret', secretFile]);
    for (let i = 1; i <= FRONTS; i++) fronts.push(await startFront(i, dir, configPath, secretFile));
    for (const front of fronts) await waitReady(front, groupOf.get('user1')!);
    log(`all ready after ${((performance.now() - started) / 1000).toFixed(1)} s; filling every map's cache`);
    await Promise.all(
      fronts.map(async (front) => {
        for (const user of groupOf.keys()) await front.maps.group.ask(user);
        for (const group of settingsOf.keys()) await front.maps.settings.ask(group);
      }),
    );

    // What PostgreSQL sees, sampled once a second.
    const peaks = new Map<string, number>();
    let peakTotal = 0;
    let lastCounts = new Map<string, number>();
    const appNames = new Map<number, string>();
    const sampleConnections = async () => {
      const { rows } = await sql.query<{ pid: number; app: string }>(
        `SELECT pid, coalesce(nullif(application_name, ''), backend_type) AS app FROM pg_stat_activity
          WHERE datname = current_database() OR datname IS NULL`,
      );
      const counts = new Map<string, number>();
      for (const row of rows) {
        counts.set(row.app, (counts.get(row.app) ?? 0) + 1);
        appNames.set(row.pid, row.app);
      }
      let total = 0;
      for (const [app, n] of counts) {
        peaks.set(app, Math.max(peaks.get(app) ?? 0, n));
        if (app.startsWith('plexer')) total += n;
      }
      peakTotal = Math.max(peakTotal, total);
      lastCounts = counts;
    };

    // Background traffic and authd checks, during the baseline and the churn alike.
    let running = true;
    let trafficLookups = 0;
    const authStatuses = new Map<number, number>();
    const users = [...groupOf.keys()];
    const randomUser = () => users[Math.floor(Math.random() * users.length)]!;
    const background = fronts.flatMap((front) => [
      (async () => {
        for (let next = performance.now(); running; next += 1000 / TRAFFIC) {
          await front.maps.group.ask(randomUser());
          trafficLookups++;
          await sleep(Math.max(0, next + 1000 / TRAFFIC - performance.now()));
        }
      })(),
      (async () => {
        while (running) {
          const status = await authCheck(front, randomUser()).catch(() => 0);
          authStatuses.set(status, (authStatuses.get(status) ?? 0) + 1);
          await sleep(1000);
        }
      })(),
    ]);
    const sampler = (async () => {
      while (running) {
        await sampleConnections();
        await sleep(1000);
      }
    })();

    log(`baseline: ${BASELINE_SECONDS} s with traffic (${TRAFFIC} lookups/s and 1 authd check/s per front end), no changes`);
    const baseStart = sampleCpu(cluster, fronts);
    await sleep(BASELINE_SECONDS * 1000);
    const baseEnd = sampleCpu(cluster, fronts);

    log(
      `churn: ${RATE} changes/s for ${SECONDS} s (${SETTINGS_EVERY > 0 ? `every ${SETTINGS_EVERY}th a settings change, the others user moves` : 'user moves only'})`,
    );
    const changes: Change[] = [];
    const pending = new Set<string>();
    const watches: Array<Promise<void>> = [];
    const watch = (change: Change, front: Front) =>
      (async () => {
        const expected = answerNaming(change.key, change.value);
        for (;;) {
          const answer = await front.maps[change.kind].ask(change.key);
          const elapsed = performance.now() - change.committedAt;
          if (answer === expected) return void (change.seenAfterMs[front.index - 1] = elapsed);
          if (elapsed > MISS_AFTER_MS) return;
          // Polling every slow front end every millisecond would itself load the machine it measures: the
          // resolution stays within a tenth of the value measured.
          await sleep(Math.max(POLL_MS, elapsed / 10));
        }
      })();
    // A key changed again before every front end saw its last value would hide that value for good.
    const pick = async (keys: string[]) => {
      for (;;) {
        const free = keys.filter((key) => !pending.has(key));
        if (free.length > 0) return free[Math.floor(Math.random() * free.length)]!;
        await sleep(POLL_MS);
      }
    };
    const churnStart = sampleCpu(cluster, fronts);
    const benchCpuStart = process.cpuUsage();
    for (let i = 0; i < RATE * SECONDS; i++) {
      await sleep(Math.max(0, churnStart.at + (i * 1000) / RATE - performance.now()));
      let change: Change;
      if (SETTINGS_EVERY > 0 && i % SETTINGS_EVERY === SETTINGS_EVERY - 1) {
        const group = await pick([...settingsOf.keys()]);
        const value = `tenants.${group.replace('tenant', 't')}.v${i + 1}`;
        settingsOf.set(group, value);
        change = { kind: 'settings', key: group, value, committedAt: 0, seenAfterMs: [] };
        pending.add(group);
        await sql.query('UPDATE daemon_groups SET settings_module = $2 WHERE name = $1', [group, value]);
      } else {
        const user = await pick(users);
        const from = groupOf.get(user)!;
        const value = `tenant${1 + ((Number(from.slice(6)) + Math.floor(Math.random() * (GROUPS - 1))) % GROUPS)}`;
        groupOf.set(user, value);
        change = { kind: 'group', key: user, value, committedAt: 0, seenAfterMs: [] };
        pending.add(user);
        await sql.query('UPDATE users SET daemon_group = $2 WHERE name = $1', [user, value]);
      }
      change.committedAt = performance.now();
      changes.push(change);
      const settled = Promise.all(fronts.map((front) => watch(change, front))).then(() => void pending.delete(change.key));
      watches.push(settled);
    }
    await Promise.all(watches);
    const churnEnd = sampleCpu(cluster, fronts);
    const benchCpu = process.cpuUsage(benchCpuStart);
    await sampleConnections();
    const rss = new Map<HelperKind, number[]>();
    for (const front of fronts) {
      for (const [kind, child] of front.helpers) {
        rss.set(
          kind,
          [...(rss.get(kind) ?? []), rssKiB(child.pid)].sort((a, b) => a - b),
        );
      }
    }
    running = false;
    await Promise.all([...background, sampler]);
    await stopAll();

    // Figures.
    const observed = changes.flatMap((c) => c.seenAfterMs.filter((ms): ms is number => ms !== undefined)).sort((a, b) => a - b);
    const missed = changes.reduce((n, c) => n + fronts.filter((f) => c.seenAfterMs[f.index - 1] === undefined).length, 0);
    const byKind = (kind: Kind) =>
      changes
        .filter((c) => c.kind === kind)
        .flatMap((c) => c.seenAfterMs.filter((ms): ms is number => ms !== undefined))
        .sort((a, b) => a - b);
    const churnSeconds = (churnEnd.at - churnStart.at) / 1000;
    const baseSeconds = (baseEnd.at - baseStart.at) / 1000;
    const pgBaselineMsPerS = (postgresTicks(baseStart, baseEnd) * TICK_MS) / baseSeconds;
    const pgChurnMs = postgresTicks(churnStart, churnEnd) * TICK_MS;
    const pgNetMs = pgChurnMs - pgBaselineMsPerS * churnSeconds;
    const helperPerChange = (kind: HelperKind) => {
      const base = (((baseEnd.helpers.get(kind) ?? 0) - (baseStart.helpers.get(kind) ?? 0)) * TICK_MS) / baseSeconds;
      const churn = ((churnEnd.helpers.get(kind) ?? 0) - (churnStart.helpers.get(kind) ?? 0)) * TICK_MS;
      return (churn - base * churnSeconds) / changes.length / FRONTS;
    };
    // Which backends did the work (live backends by application_name; exited ones show under the postmaster).
    const pgByApp = new Map<string, number>();
    for (const [pid, p] of churnEnd.postgres) {
      const app = appNames.get(pid) ?? 'postmaster (and exited backends)';
      pgByApp.set(app, (pgByApp.get(app) ?? 0) + (p.ticks - (churnStart.postgres.get(pid)?.ticks ?? 0)) * TICK_MS);
    }
    const rebuilds = fronts.reduce((n, f) => n + (readFileSync(f.logs.sync, 'utf8').match(/ maps rebuilt /g) ?? []).length, 0);
    const problems = fronts.flatMap((f) =>
      Object.values(f.logs).flatMap((path) =>
        readFileSync(path, 'utf8')
          .split('\n')
          .filter((l) => / (warn|error): /.test(l)),
      ),
    );
    const plexerApps = [...peaks.keys()].filter((app) => app.startsWith('plexer')).sort();
    const fmt = (xs: number[]) =>
      xs.length === 0 ? 'none' : `${percentile(xs, 50).toFixed(1)} ms / ${percentile(xs, 99).toFixed(1)} ms / ${xs.at(-1)!.toFixed(1)} ms`;
    const mib = (kib: number) => `${(kib / 1024).toFixed(0)} MiB`;
    const rssRow = (kind: string) => {
      const xs = rss.get(kind) ?? [];
      return `${mib(percentile(xs, 50))} / ${mib(xs.at(-1) ?? NaN)}`;
    };

    const rows: Array<[string, string]> = [
      [`front ends (each: ${HELPER_KINDS.join(', ')})`, String(FRONTS)],
      ['users / groups in the store', `${USERS} / ${GROUPS}`],
      [
        'changes committed (user moves + settings changes)',
        `${changes.length} in ${churnSeconds.toFixed(1)} s (${changes.filter((c) => c.kind === 'group').length} + ${changes.filter((c) => c.kind === 'settings').length})`,
      ],
      ['(change, front end) pairs seen / missed', `${observed.length} / ${missed}`],
      ['propagation COMMIT → map answers new value, p50 / p99 / max', fmt(observed)],
      ['… user moves (group map)', fmt(byKind('group'))],
      ['… settings changes (settings map)', fmt(byKind('settings'))],
      ...plexerApps.map((app): [string, string] => [
        `connections held by \`${app}\`, peak (at end)`,
        `${peaks.get(app)} (${lastCounts.get(app) ?? 0})`,
      ]),
      [
        'connections held by plexer, peak total (per front end; budget per front end)',
        `${peakTotal} (${(peakTotal / FRONTS).toFixed(1)}; ${BUDGET_PER_FRONT})`,
      ],
      ['PostgreSQL CPU, baseline (traffic, no changes)', `${pgBaselineMsPerS.toFixed(1)} ms/s`],
      [
        'PostgreSQL CPU per change (baseline subtracted)',
        `${(pgNetMs / changes.length).toFixed(2)} ms (raw ${(pgChurnMs / changes.length).toFixed(2)} ms)`,
      ],
      ...[...pgByApp]
        .filter(([, ms]) => ms > 0)
        .sort((a, b) => b[1] - a[1])
        .map(([app, ms]): [string, string] => [`… in \`${app}\` backends (raw)`, `${(ms / changes.length).toFixed(2)} ms`]),
      [
        'this bench process (drives every pipe) CPU during the churn',
        `${((benchCpu.user + benchCpu.system) / 1000 / churnSeconds / 10).toFixed(0)} % of one core`,
      ],
      [
        'machine CPU busy during the churn (all cores, every process)',
        `${((100 * (churnEnd.machine.busy - churnStart.machine.busy)) / (churnEnd.machine.total - churnStart.machine.total)).toFixed(0)} %`,
      ],
      ...HELPER_KINDS.map((kind): [string, string] => [
        `helper CPU per change per front end: ${kind}`,
        `${helperPerChange(kind).toFixed(2)} ms`,
      ]),
      ...(WITH_SYNC
        ? [
            ['sync rebuilds (all front ends)', `${rebuilds} (${(rebuilds / FRONTS / churnSeconds).toFixed(1)}/s per front end)`] as [
              string,
              string,
            ],
          ]
        : []),
      ...HELPER_KINDS.map((kind): [string, string] => [`RSS ${kind}, median / max`, rssRow(kind)]),
      [
        'background map lookups / authd checks (statuses)',
        `${trafficLookups} / ${[...authStatuses].map(([s, n]) => `${n}×${s}`).join(', ')}`,
      ],
      ['helper warn/error log lines', String(problems.length)],
    ];
    const table = resultsTable(
      `### ${FRONTS} front ends on one PostgreSQL${WITH_SYNC ? '' : ', without sync'} (${new Date().toISOString().slice(0, 16).replace('T', ' ')} UTC)`,
      `Machine: ${machine()}, every process on the same cores${quick ? ', --quick' : ''}. ` +
        `${RATE} changes/s for ${SECONDS} s after a ${BASELINE_SECONDS} s baseline; ${TRAFFIC} background lookups/s and 1 authd check/s per front end; ` +
        `each changed key polled on every front end's map every ~${POLL_MS} ms (after 10 ms: every tenth of the time elapsed). pool_max = ${POOL_MAX}, max_connections = ${MAX_CONNECTIONS}. ` +
        `Reproduce: \`npm run bench:fronts${process.argv.length > 2 ? ` -- ${process.argv.slice(2).join(' ')}` : ''}\`.`,
      rows,
    );
    process.stdout.write(`\n${table}`);
    if (problems.length > 0) process.stdout.write(`\nfirst helper warnings:\n${problems.slice(0, 10).join('\n')}\n`);
    if (opts.json) {
      writeFileSync(
        opts.json,
        JSON.stringify({
          fronts: FRONTS,
          changes: changes.map((c) => ({
            kind: c.kind,
            key: c.key,
            value: c.value,
            seenBy: c.seenAfterMs.filter((ms) => ms !== undefined).length,
          })),
          missed,
          peakConnections: Object.fromEntries(peaks),
          authStatuses: Object.fromEntries(authStatuses),
        }),
      );
    }
    if (missed > 0) {
      failed = true;
      console.error(`bench:fronts: ${missed} (change, front end) pairs never answered the new value within ${MISS_AFTER_MS} ms`);
    }
  } catch (error) {
    failed = true;
    console.error(`bench:fronts: ${coerceError(error).message}; helper logs in ${dir}`);
    await stopAll();
  } finally {
    await driver?.end();
    await cluster.stop();
    if (!failed) rmSync(dir, { recursive: true, force: true });
  }
  log(`done in ${((performance.now() - started) / 1000).toFixed(0)} s`);
  process.exit(failed ? 1 : 0);
}

function log(message: string): void {
  process.stderr.write(`${new Date().toISOString()} bench:fronts ${message}\n`);
}

await main();
