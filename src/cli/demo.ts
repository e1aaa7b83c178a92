import { mkdirSync, readFileSync, rmSync } from 'node:fs';
import { writeFileAtomic } from '../files.js';
import { join, resolve } from 'node:path';
import pg from 'pg';
import { startFront } from '../demo/front.js';
import { freePort, stopLeftoverHttpd } from '../demo/httpd.js';
import { PACKAGE_ROOT } from '../apache/install-paths.js';
import { openFiles, processArgv, processCwd, processIds } from '../proc.js';
import { ClusterError, startPrivateCluster, withDatabase } from '../demo/private-cluster.js';
import { adminConfig, formatConfig, loadConfig } from '../config.js';
import { coerceError, PlexerError, RefusedError, ServiceStartError } from '../errors.js';
import { hashPassword } from '../password.js';
import * as accounts from '../store/accounts.js';
import { createPool } from '../store/connect.js';
import { apacheOwner, ensureOsUser, formatRunAs } from '../tenant-users.js';
import { migrate } from '../store/migrate.js';
import { grantHelperRole } from '../store/roles.js';
import { parseCommand, parseWholeNumber } from './args.js';
import { print, type Command } from './command.js';

const help = `Usage: plexer demo [--state-dir DIR] [--port N] [--slots N]

The main job on one machine, for trying plexer: starts a private PostgreSQL cluster in STATE-DIR/pg (default
${PACKAGE_ROOT}/.state/demo), migrates it, creates three daemon groups (alpha, beta, gamma: each its own Django
instance with its own SQLite database) and sample users, writes the Apache config and starts its own httpd on
127.0.0.1:PORT (default 8080, or a free port if taken). It runs until SIGINT (Ctrl-C), SIGTERM or SIGHUP, then
stops everything it started. What a killed earlier demo left running in STATE-DIR (its Apache with every
worker, map and WSGI daemon, its PostgreSQL) is stopped first. Needs root (Apache switches to www-data).
  --slots N   the accounts share a pool of N slots, bound on demand (default 2: fewer than the three accounts,
              so that slots are seen being recycled; plexer slots shows them). 0: one daemon group per
              account, each running as its own OS user, as without a pool.`;

// Without a pool each account's own slot runs as its own system user (created if missing, as "plexer group add
// --run-as U --create-user").
const SAMPLE_ACCOUNTS = [
  { name: 'alpha', settings: 'tenants.settings_alpha', runAs: 'plexer-alpha' },
  { name: 'beta', settings: 'tenants.settings_beta', runAs: 'plexer-beta' },
  { name: 'gamma', settings: 'tenants.settings_generic', runAs: 'plexer-gamma' },
];
const DEMO_SLOTS = 2;
const SAMPLE_USERS = [
  { name: 'alice', account: 'alpha', password: 'alice-password', roles: ['admins'] },
  { name: 'bob', account: 'beta', password: 'bob-password', roles: [] },
  { name: 'carol', account: 'gamma', password: 'carol-password', roles: [] },
  { name: 'dave', account: null, password: 'dave-password', roles: [] },
];

async function portIsFree(port: number): Promise<boolean> {
  const net = await import('node:net');
  return new Promise((resolveFree) => {
    const server = net.createServer().once('error', () => resolveFree(false));
    server.listen(port, '127.0.0.1', () => server.close(() => resolveFree(true)));
  });
}

export const command: Command = {
  summary: 'run Apache + plexer + PostgreSQL with sample accounts on localhost',
  help,
  async run(argv) {
    const { values } = parseCommand(argv, { 'state-dir': { type: 'string' }, port: { type: 'string' }, slots: { type: 'string' } });
    if (values.help) return (print(help), 0);
    if (process.getuid?.() !== 0) throw new RefusedError('the demo starts its own Apache, which needs root to switch to www-data');
    const stateDir = resolve(values['state-dir'] ?? join(PACKAGE_ROOT, '.state/demo'));
    const wanted = values.port ? parseWholeNumber(values.port, '--port') : 8080;
    const slots = values.slots === undefined ? DEMO_SLOTS : values.slots === '0' ? 0 : parseWholeNumber(values.slots, '--slots');
    // Installed first, so a signal during the start stops what has started by then instead of killing the demo
    // half-way and leaving it running.
    const stopRequested = new Promise<NodeJS.Signals>((resolveStop) => {
      for (const signal of STOP_SIGNALS) process.once(signal, () => resolveStop(signal));
    });
    // After SIGHUP the terminal may be gone: a failed write must not abort the stop half-way.
    process.stdout.on('error', () => undefined);
    claimStateDir(stateDir);
    const leftover = await stopLeftoverHttpd(join(stateDir, 'apache'));
    if (leftover > 0) print(`stopped ${leftover} Apache process(es) a killed earlier demo left running in ${stateDir}`);
    const port = (await portIsFree(wanted)) ? wanted : await freePort();

    const pgDir = join(stateDir, 'pg');
    const cluster = await startPrivateCluster({ dir: pgDir, peerMap: DEMO_PEER_MAP, log: print }).catch((error: unknown) => {
      if (!(error instanceof ClusterError)) throw error;
      throw new ServiceStartError(
        `PostgreSQL did not start: ${error.message.split('\n', 1)[0]}\nPostgreSQL's log: ${join(pgDir, 'postgres.log')}`,
      );
    });
    const stops: Array<() => Promise<void>> = [() => cluster.stop()];
    let failed = false;
    const stopAll = async () => {
      for (const stop of stops.reverse()) {
        await stop().catch((error: Error) => {
          failed = true;
          print(`stop: ${error.message}`);
        });
      }
    };
    try {
      await prepareDemoDatabase(cluster.url);
      const configPath = join(stateDir, 'plexer.conf');
      // 0640 root:www-data: Apache's helpers read it, the tenants (their own users) cannot.
      const values = {
        pg_host: cluster.host,
        pg_port: cluster.port,
        pg_database: 'plexer',
        pg_user: HELPER_ROLE,
        admin_pg_user: ADMIN_ROLE,
        cache_ttl_ms: 300000,
        map_deadline_ms: 50,
      };
      const comment =
        'Written by plexer demo: the private cluster on its unix socket, no TCP, peer authentication through an\n' +
        `ident map (www-data -> ${HELPER_ROLE}, root -> ${ADMIN_ROLE}); no password anywhere.`;
      writeFileAtomic(configPath, formatConfig(values, comment), { mode: 0o640, owner: { uid: 0, gid: apacheOwner().gid } });
      const config = loadConfig({ path: configPath });
      await seed(config, slots === 0);
      const front = await startFront({
        stateDir,
        configPath,
        config,
        port,
        // Logins in a private memcached: they survive a reload, and a changed password takes effect at once.
        loginCache: true,
        authCacheTimeoutSeconds: 28_800,
        // authn a thin client of a long-running checker: a password Apache has not cached costs little.
        extra: { loginChecker: true, ...(slots > 0 ? { pool: { slots } } : {}) },
      });
      stops.push(() => front.stop());
      print(`plexer demo is up: ${front.httpd.url}/app/  (Apache PID ${front.httpd.pid})`);
      print('Sample accounts (HTTP Basic):');
      for (const u of SAMPLE_USERS)
        print(`  ${u.name.padEnd(6)} ${u.password.padEnd(15)} -> ${u.account ?? '(no group: gets the error page)'}`);
      print(`Try: curl -u alice:alice-password ${front.httpd.url}/app/whoami`);
      if (slots > 0) {
        print(`Slots: node ${PACKAGE_ROOT}/bin/plexer slots --state-dir ${front.apacheDir}  (${slots} slots for three accounts)`);
        // Each account is a Django of its own: its admin is for the users its own database makes staff.
        print(
          `Admin: node ${PACKAGE_ROOT}/bin/plexer group exec alpha --apache-config ${front.httpd.configPath} --config ${configPath} -- python3 manage.py staff alice\n` +
            `       then ${front.httpd.url}/app/admin/ as alice is alpha's own Django admin`,
        );
      }
      print(`Manage: node ${PACKAGE_ROOT}/bin/plexer user list --config ${configPath}`);
      print(`Check: node ${PACKAGE_ROOT}/bin/plexer doctor --config ${configPath} --apache-config ${front.httpd.configPath}`);
      print('Ctrl-C stops Apache and PostgreSQL.');
      // Signal listeners alone keep no event loop alive: without a handle the demo would return at once.
      const keepAlive = setInterval(() => undefined, 1 << 30);
      const signal = await stopRequested;
      clearInterval(keepAlive);
      print(`${signal}: stopping…`);
    } catch (error) {
      // A short reason, not a stack: what broke is named, the logs are in the state directory.
      if (error instanceof PlexerError) throw error;
      throw new ServiceStartError(
        `the demo did not start: ${coerceError(error).message}\nlogs: ${stateDir}/apache/error.log, ${pgDir}/postgres.log`,
      );
    } finally {
      await stopAll();
    }
    // Checked, not assumed: anything still running from the state directory is named (and left alone: it may
    // be someone's shell).
    const left = processesUsing(stateDir);
    for (const p of left) print(`still running from ${stateDir}: PID ${p.pid} ${p.command}`);
    if (failed || left.length > 0) return 1;
    rmSync(join(stateDir, 'demo.pid'), { force: true });
    print('stopped Apache and PostgreSQL; no process of the demo is left');
    return 0;
  },
};

const STOP_SIGNALS: NodeJS.Signals[] = ['SIGINT', 'SIGTERM', 'SIGHUP'];

// One demo per state directory: a second one would stop the first one's Apache as a leftover. The PID file of
// a demo that is gone (killed) is simply taken over.
function claimStateDir(stateDir: string): void {
  const pidFile = join(stateDir, 'demo.pid');
  const other = Number.parseInt(readFileSyncOrEmpty(pidFile), 10);
  if (Number.isInteger(other) && other !== process.pid && demoStateDir(other) === stateDir) {
    throw new RefusedError(
      `another plexer demo (PID ${other}) runs on ${stateDir}: stop it first (kill ${other}), or give this one another --state-dir`,
    );
  }
  mkdirSync(stateDir, { recursive: true });
  writeFileAtomic(pidFile, `${process.pid}\n`, { mode: 0o644 });
}

function readFileSyncOrEmpty(path: string): string {
  try {
    return readFileSync(path, 'utf8');
  } catch {
    return '';
  }
}

// Processes other than this one whose command line, working directory or open files are in `dir`.
function processesUsing(dir: string): Array<{ pid: number; command: string }> {
  const inDir = (path: string) => path === dir || path.startsWith(dir + '/');
  const found: Array<{ pid: number; command: string }> = [];
  for (const pid of processIds()) {
    if (pid === process.pid) continue;
    const argv = processArgv(pid).filter(Boolean);
    const links = [processCwd(pid) ?? '', ...openFiles(pid).values()];
    if (argv.some((arg) => arg.includes(dir + '/') || arg.endsWith(dir)) || links.some(inDir)) found.push({ pid, command: argv.join(' ') });
  }
  return found;
}

// The state directory of the plexer demo running as PID, as it resolved it; undefined for any other process.
function demoStateDir(pid: number): string | undefined {
  const argv = processArgv(pid);
  const at = argv.indexOf('demo');
  if (at < 2 || !argv.slice(0, at).some((arg) => arg.endsWith('bin/plexer') || arg.endsWith('cli/main.js'))) return undefined;
  const args = argv.slice(at + 1);
  const flag = args.indexOf('--state-dir');
  const given = flag >= 0 ? args[flag + 1] : args.find((arg) => arg.startsWith('--state-dir='))?.slice('--state-dir='.length);
  if (given === undefined) return join(PACKAGE_ROOT, '.state/demo');
  const cwd = processCwd(pid);
  return cwd === null ? undefined : resolve(cwd, given);
}

// Who may connect to the demo's cluster, and as which role (peer authentication on its socket, no TCP). root
// runs the demo and the CLI: the superuser to set up roles, the admin role for everything else, and the
// helpers' role to render Apache's config from the helpers' settings; www-data runs Apache's helpers. Every
// other local user, the tenants' own OS users included, is refused.
const ADMIN_ROLE = 'plexer_admin';
const HELPER_ROLE = 'plexer_helper';
const DEMO_PEER_MAP: Array<[string, string]> = [
  ['postgres', 'postgres'],
  ['root', 'postgres'],
  ['root', ADMIN_ROLE],
  ['root', HELPER_ROLE],
  ['www-data', HELPER_ROLE],
];

// As the superuser: the two roles (no powers; the admin role gets none either, owning the database is enough
// to migrate), and the database owned by the admin role. Objects of a state directory from before least
// privilege, owned by the superuser, are handed to the admin role so the CLI can manage them.
async function prepareDemoDatabase(superuserUrl: string): Promise<void> {
  const su = new pg.Client({ connectionString: superuserUrl });
  await su.connect();
  try {
    for (const role of [ADMIN_ROLE, HELPER_ROLE]) {
      const found = await su.query('SELECT 1 FROM pg_roles WHERE rolname = $1', [role]);
      if (found.rowCount === 0) await su.query(`CREATE ROLE ${role} LOGIN NOSUPERUSER NOCREATEDB NOCREATEROLE`);
    }
    const exists = await su.query(`SELECT 1 FROM pg_database WHERE datname = 'plexer'`);
    await su.query(exists.rowCount === 0 ? `CREATE DATABASE plexer OWNER ${ADMIN_ROLE}` : `ALTER DATABASE plexer OWNER TO ${ADMIN_ROLE}`);
  } finally {
    await su.end();
  }
  const db = new pg.Client({ connectionString: withDatabase(superuserUrl, 'plexer') });
  await db.connect();
  try {
    await db.query(`DO $$
      DECLARE r record;
      BEGIN
        FOR r IN SELECT nspname FROM pg_namespace WHERE nspname = 'plexer' AND nspowner <> '${ADMIN_ROLE}'::regrole LOOP
          EXECUTE 'ALTER SCHEMA plexer OWNER TO ${ADMIN_ROLE}';
        END LOOP;
        FOR r IN SELECT c.relname FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
                  WHERE n.nspname = 'plexer' AND c.relkind IN ('r', 'p') AND c.relowner <> '${ADMIN_ROLE}'::regrole LOOP
          EXECUTE format('ALTER TABLE plexer.%I OWNER TO ${ADMIN_ROLE}', r.relname);
        END LOOP;
        FOR r IN SELECT p.oid::regprocedure AS sig FROM pg_proc p JOIN pg_namespace n ON n.oid = p.pronamespace
                  WHERE n.nspname = 'plexer' AND p.proowner <> '${ADMIN_ROLE}'::regrole LOOP
          EXECUTE format('ALTER FUNCTION %s OWNER TO ${ADMIN_ROLE}', r.sig);
        END LOOP;
      END $$`);
  } finally {
    await db.end();
  }
}

// As the admin role, as `plexer db migrate --helper-role` would.
// ownSlots: a slot of its own per account, each with its own OS user (a pool's slots have theirs instead).
async function seed(config: ReturnType<typeof loadConfig>, ownSlots: boolean): Promise<void> {
  const pool = createPool(adminConfig(config), { max: 2, applicationName: 'plexer-demo' });
  try {
    const client = await pool.connect();
    try {
      await migrate(client, config.schema);
      await grantHelperRole(client, config.schema, HELPER_ROLE, { login: true });
    } finally {
      client.release();
    }
    const stored = new Map((await accounts.listAccounts(pool)).map((a) => [a.name, a]));
    for (const a of SAMPLE_ACCOUNTS) {
      const existing = stored.get(a.name);
      if (!ownSlots) {
        if (!existing) await accounts.addAccount(pool, a.name, { settingsModule: a.settings });
        continue;
      }
      const runAs = formatRunAs(ensureOsUser(a.runAs, { create: true }));
      if (!existing) await accounts.addAccount(pool, a.name, { settingsModule: a.settings, runAs });
      // A demo state directory from before run_as: its accounts get their users now.
      else if (existing.run_as === null) await accounts.updateAccount(pool, a.name, { runAs });
    }
    for (const u of SAMPLE_USERS) {
      if (await accounts.userExists(pool, u.name)) continue;
      await accounts.addUser(pool, u.name, await hashPassword(u.password, config.bcryptCost), u.account);
      for (const role of u.roles) await accounts.grantRole(pool, u.name, role);
    }
  } finally {
    await pool.end();
  }
}
