// A throwaway PostgreSQL cluster owned by this process: used by the test suite and by local
// development, never by production (which points at a real server through its config file).
//
// Layout of `dir`:
//   data/          the cluster (PGDATA); must stay 0700, so the socket lives outside it
//   socket/        unix socket directory, world-traversable so www-data (Apache's helpers) can connect
//   postgres.log   server log
//
// No TCP listener. Authentication on the socket is trust (anyone who can reach the socket is anyone:
// disposable test clusters only) unless `peerMap` is given: then peer authentication through that ident map,
// so only the listed OS users get in, each only as its listed roles (what the demo uses, with tenants running
// as OS users of their own on the same machine). Both files are rewritten at every start, so a reused
// cluster follows the options of the current run, unless the caller keeps its own (`authFiles`).
import { spawn } from 'node:child_process';
import { existsSync } from 'node:fs';
import { chmod, chown, mkdir, readFile, readdir, rm, stat, writeFile } from 'node:fs/promises';
import { createServer } from 'node:net';
import { dirname, join, resolve } from 'node:path';
import pg from 'pg';
import { processArgv } from '../proc.js';

export interface PrivateCluster {
  /** The unix socket directory. */
  host: string;
  port: number;
  /** Connection URL for the `postgres` database, accepted by node-postgres and libpq. */
  url: string;
  superuser: string;
  dataDir: string;
  stop(): Promise<void>;
  /** Starts the server again after stop(), on the same directory and port; no-op if running. */
  start(): Promise<void>;
}

export interface StartOptions {
  dir: string;
  port?: number;
  log?: (line: string) => void;
  /** [OS user, PostgreSQL role] pairs allowed to connect (peer authentication); absent: trust. */
  peerMap?: Array<[osUser: string, role: string]>;
  /**
   * pg_hba.conf and pg_ident.conf that the caller keeps, read as they are and never written here (instead of
   * peerMap's): a test that edits them as an administrator edits Debian's /etc/postgresql/VERSION/main. They must be
   * readable by the postgres user.
   */
  authFiles?: { hba: string; ident: string };
}

export class ClusterError extends Error {
  override name = 'ClusterError';
  constructor(
    message: string,
    readonly logTail?: string,
  ) {
    super(logTail ? `${message}\n--- tail of postgres.log ---\n${logTail}` : message);
  }
}

const SUPERUSER = 'postgres';
const OS_USER = 'postgres';
// Settings we own are kept in a separate file so a reused cluster picks up changes here.
const SETTINGS_FILE = 'plexer.conf';
const HBA_FILE = 'plexer_hba.conf';
const IDENT_FILE = 'plexer_ident.conf';

export async function startPrivateCluster(opts: StartOptions): Promise<PrivateCluster> {
  const cluster = await prepareCluster(opts);
  await stopLeftoverServer(cluster.paths, opts.log);
  await cluster.start();
  return cluster;
}

/**
 * A handle on a cluster directory already set up by startPrivateCluster (possibly in another
 * process), without starting or stopping anything.
 */
export async function openPrivateCluster(dir: string, log?: (line: string) => void): Promise<PrivateCluster> {
  const paths = clusterPaths(dir);
  const port = await readConfiguredPort(paths.dataDir);
  if (port === undefined) {
    throw new ClusterError(`${paths.dataDir} holds no plexer cluster settings; start it once with startPrivateCluster`);
  }
  return makeHandle(paths, port, log);
}

/** Creates a database and returns its URL. `server.url` may be any admin connection URL. */
export async function createDatabase(server: { url: string }, name: string): Promise<string> {
  await withClient(server.url, (client) => client.query(`CREATE DATABASE ${pg.escapeIdentifier(name)}`));
  return withDatabase(server.url, name);
}

/** Drops a database, disconnecting anyone still using it (a test that leaked a pool must not block cleanup). */
export async function dropDatabase(server: { url: string }, name: string): Promise<void> {
  await withClient(server.url, (client) => client.query(`DROP DATABASE IF EXISTS ${pg.escapeIdentifier(name)} WITH (FORCE)`));
}

/** The same connection URL with its database name replaced. */
export function withDatabase(url: string, database: string): string {
  const match = /^(postgres(?:ql)?:\/\/[^/?#]*)(?:\/[^?#]*)?(.*)$/.exec(url);
  if (!match) throw new ClusterError(`not a postgres:// URL: ${url}`);
  return `${match[1]}/${encodeURIComponent(database)}${match[2]}`;
}

interface ClusterPaths {
  dir: string;
  dataDir: string;
  socketDir: string;
  logFile: string;
}

function clusterPaths(dir: string): ClusterPaths {
  const abs = resolve(dir);
  return { dir: abs, dataDir: join(abs, 'data'), socketDir: join(abs, 'socket'), logFile: join(abs, 'postgres.log') };
}

async function prepareCluster(opts: StartOptions): Promise<PrivateCluster & { paths: ClusterPaths }> {
  const paths = clusterPaths(opts.dir);
  await mkdir(paths.socketDir, { recursive: true });
  await makeReachable(paths);
  if (!existsSync(join(paths.dataDir, 'PG_VERSION'))) await initCluster(paths, opts.log);
  const port = opts.port ?? (await reusablePort(paths.dataDir)) ?? (await freePort());
  await writeSettings(paths, port, opts.peerMap, opts.authFiles);
  return { ...makeHandle(paths, port, opts.log), paths };
}

function makeHandle(paths: ClusterPaths, port: number, log?: (line: string) => void): PrivateCluster {
  return {
    host: paths.socketDir,
    port,
    url: `postgresql://${SUPERUSER}@/postgres?host=${encodeURIComponent(paths.socketDir).replace(/%2F/g, '/')}&port=${port}`,
    superuser: SUPERUSER,
    dataDir: paths.dataDir,
    start: () => startServer(paths, log),
    stop: () => stopServer(paths, log),
  };
}

async function initCluster(paths: ClusterPaths, log?: (line: string) => void): Promise<void> {
  log?.(`initdb ${paths.dataDir}`);
  const result = await pgTool('initdb', [
    '-D',
    paths.dataDir,
    '-U',
    SUPERUSER,
    '-E',
    'UTF8',
    '--locale=C',
    '--no-sync',
    '--auth-local=trust',
    '--auth-host=reject',
  ]);
  if (result.code !== 0) {
    throw new ClusterError(`initdb failed for ${paths.dataDir} (exit ${result.code}):\n${result.stderr.trim()}`);
  }
  const conf = join(paths.dataDir, 'postgresql.conf');
  await writeFile(conf, `${await readFile(conf, 'utf8')}\ninclude_if_exists = '${SETTINGS_FILE}'\n`);
}

const OS_OR_ROLE_NAME = /^[a-z_][a-z0-9_-]{0,62}$/;

async function writeSettings(
  paths: ClusterPaths,
  port: number,
  peerMap?: Array<[string, string]>,
  authFiles?: { hba: string; ident: string },
): Promise<void> {
  const { hba: hbaFile, ident: identFile } = authFiles ?? (await writeAuthFiles(paths, peerMap));
  const settings = [
    `hba_file = '${hbaFile.replace(/'/g, "''")}'`,
    `ident_file = '${identFile.replace(/'/g, "''")}'`,
    `listen_addresses = ''`,
    `port = ${port}`,
    `unix_socket_directories = '${paths.socketDir.replace(/'/g, "''")}'`,
    // Test data is disposable: durability only costs time.
    'fsync = off',
    'synchronous_commit = off',
    'full_page_writes = off',
    'max_connections = 200',
    'shared_buffers = 128MB',
  ];
  const file = join(paths.dataDir, SETTINGS_FILE);
  await writeFile(file, settings.join('\n') + '\n');
  await chownToPostgres(file);
}

async function writeAuthFiles(paths: ClusterPaths, peerMap?: Array<[string, string]>): Promise<{ hba: string; ident: string }> {
  for (const name of (peerMap ?? []).flat()) {
    if (!OS_OR_ROLE_NAME.test(name)) throw new ClusterError(`peer map: "${name}" is not a plain user or role name`);
  }
  const hba = peerMap
    ? ['# Written by plexer at every start: peer authentication through the ident map only.', 'local all all peer map=plexer']
    : ['# Written by plexer at every start: a disposable cluster, socket only, trust.', 'local all all trust'];
  const ident = ['# MAPNAME SYSTEM-USERNAME PG-USERNAME', ...(peerMap ?? []).map(([os, role]) => `plexer ${os} ${role}`)];
  const hbaFile = join(paths.dataDir, HBA_FILE);
  const identFile = join(paths.dataDir, IDENT_FILE);
  await writeFile(hbaFile, hba.join('\n') + '\n', { mode: 0o600 });
  await writeFile(identFile, ident.join('\n') + '\n', { mode: 0o600 });
  await chownToPostgres(hbaFile);
  await chownToPostgres(identFile);
  return { hba: hbaFile, ident: identFile };
}

async function readConfiguredPort(dataDir: string): Promise<number | undefined> {
  const text = await readFile(join(dataDir, SETTINGS_FILE), 'utf8').catch(() => '');
  const match = /^port = (\d+)$/m.exec(text);
  return match ? Number(match[1]) : undefined;
}

/** Keeping the previous port keeps a reused cluster's URL stable across runs. */
async function reusablePort(dataDir: string): Promise<number | undefined> {
  const port = await readConfiguredPort(dataDir);
  return port !== undefined && (await isPortFree(port)) ? port : undefined;
}

async function startServer(paths: ClusterPaths, log?: (line: string) => void): Promise<void> {
  if (await isRunning(paths.dataDir)) return;
  await removeStaleLockFiles(paths);
  log?.(`starting postgres in ${paths.dataDir}`);
  const result = await pgTool('pg_ctl', ['start', '-w', '-t', '60', '-D', paths.dataDir, '-l', paths.logFile]);
  if (result.code !== 0) {
    throw new ClusterError(
      `postgres did not start in ${paths.dataDir} (pg_ctl exit ${result.code}): ${result.stderr.trim() || result.stdout.trim()}`,
      await logTail(paths.logFile),
    );
  }
}

async function stopServer(paths: ClusterPaths, log?: (line: string) => void): Promise<void> {
  if (!(await isRunning(paths.dataDir))) return;
  log?.(`stopping postgres in ${paths.dataDir}`);
  const result = await pgTool('pg_ctl', ['stop', '-m', 'fast', '-w', '-t', '60', '-D', paths.dataDir]);
  if (result.code !== 0) {
    throw new ClusterError(
      `postgres did not stop in ${paths.dataDir} (pg_ctl exit ${result.code}): ${result.stderr.trim()}`,
      await logTail(paths.logFile),
    );
  }
}

/** A server left running by a killed earlier run may use other settings (port): restart it with ours. */
async function stopLeftoverServer(paths: ClusterPaths, log?: (line: string) => void): Promise<void> {
  const pid = await postmasterPid(paths.dataDir);
  if (pid === undefined || !(await isPostmasterOf(pid, paths.dataDir))) return;
  log?.(`stopping leftover postgres (PID ${pid}) in ${paths.dataDir}`);
  await stopServer(paths, log);
}

async function isRunning(dataDir: string): Promise<boolean> {
  const pid = await postmasterPid(dataDir);
  return pid !== undefined && (await isPostmasterOf(pid, dataDir));
}

/**
 * After a crash or kill -9 the lock files stay behind; postgres refuses to start if their PID was
 * reused by an unrelated process, so remove them once we know no postmaster owns them.
 */
async function removeStaleLockFiles(paths: ClusterPaths): Promise<void> {
  await rm(join(paths.dataDir, 'postmaster.pid'), { force: true });
  const entries = await readdir(paths.socketDir).catch(() => [] as string[]);
  await Promise.all(entries.filter((name) => name.startsWith('.s.PGSQL.')).map((name) => rm(join(paths.socketDir, name), { force: true })));
}

async function postmasterPid(dataDir: string): Promise<number | undefined> {
  const text = await readFile(join(dataDir, 'postmaster.pid'), 'utf8').catch(() => '');
  const pid = Number(text.split('\n', 1)[0]);
  return Number.isInteger(pid) && pid > 0 ? pid : undefined;
}

async function isPostmasterOf(pid: number, dataDir: string): Promise<boolean> {
  const args = processArgv(pid);
  return (args[0] ?? '').endsWith('postgres') && args.includes(dataDir);
}

/** postgres runs as its own OS user, so it must be able to reach and own its directories. */
async function makeReachable(paths: ClusterPaths): Promise<void> {
  for (let parent = dirname(paths.dir); parent !== dirname(parent); parent = dirname(parent)) {
    const { mode } = await stat(parent);
    if ((mode & 0o001) === 0) await chmod(parent, (mode & 0o7777) | 0o001);
  }
  await chmod(paths.dir, 0o755);
  await chmod(paths.socketDir, 0o755);
  await chownToPostgres(paths.dir);
  await chownToPostgres(paths.socketDir);
  if (existsSync(paths.logFile)) await chownToPostgres(paths.logFile);
}

async function chownToPostgres(path: string): Promise<void> {
  if (!runningAsRoot()) return;
  const { uid, gid } = await postgresIds();
  await chown(path, uid, gid);
}

let postgresIdsCache: Promise<{ uid: number; gid: number }> | undefined;

function postgresIds(): Promise<{ uid: number; gid: number }> {
  postgresIdsCache ??= (async () => {
    const [uid, gid] = await Promise.all([run('id', ['-u', OS_USER]), run('id', ['-g', OS_USER])]);
    if (uid.code !== 0 || gid.code !== 0) {
      throw new ClusterError(`OS user '${OS_USER}' not found; install the postgresql package (bin/setup)`);
    }
    return { uid: Number(uid.stdout), gid: Number(gid.stdout) };
  })();
  return postgresIdsCache;
}

function runningAsRoot(): boolean {
  return process.getuid?.() === 0;
}

async function logTail(logFile: string, lines = 30): Promise<string> {
  const text = await readFile(logFile, 'utf8').catch(() => '');
  return text.trimEnd().split('\n').slice(-lines).join('\n');
}

function isPortFree(port: number): Promise<boolean> {
  return new Promise((resolvePort) => {
    const server = createServer();
    server.once('error', () => resolvePort(false));
    server.listen(port, '127.0.0.1', () => server.close(() => resolvePort(true)));
  });
}

/** The kernel's pick of a free 127.0.0.1 port; the socket file name is derived from it. */
function freePort(): Promise<number> {
  return new Promise((resolvePort, reject) => {
    const server = createServer();
    server.once('error', reject);
    server.listen(0, '127.0.0.1', () => {
      const address = server.address();
      const port = typeof address === 'object' && address ? address.port : 0;
      server.close(() => resolvePort(port));
    });
  });
}

let binDirCache: Promise<string> | undefined;

/** PLEXER_PG_BINDIR, else the newest /usr/lib/postgresql/<major>/bin (Debian keeps them off PATH). */
function pgBinDir(): Promise<string> {
  binDirCache ??= (async () => {
    const fromEnv = process.env['PLEXER_PG_BINDIR'];
    if (fromEnv) return fromEnv;
    const majors = (await readdir('/usr/lib/postgresql').catch(() => [] as string[]))
      .filter((name) => /^\d+$/.test(name) && existsSync(`/usr/lib/postgresql/${name}/bin/pg_ctl`))
      .sort((a, b) => Number(b) - Number(a));
    if (majors[0] === undefined) {
      throw new ClusterError('no PostgreSQL server binaries in /usr/lib/postgresql/*/bin: run bin/setup or set PLEXER_PG_BINDIR');
    }
    return `/usr/lib/postgresql/${majors[0]}/bin`;
  })();
  return binDirCache;
}

/** initdb and postgres refuse to run as root. */
async function pgTool(tool: string, args: string[]): Promise<RunResult> {
  const binary = join(await pgBinDir(), tool);
  return runningAsRoot() ? run('runuser', ['-u', OS_USER, '--', binary, ...args]) : run(binary, args);
}

interface RunResult {
  code: number;
  stdout: string;
  stderr: string;
}

function run(command: string, args: string[]): Promise<RunResult> {
  return new Promise((resolveRun, reject) => {
    // cwd '/': the caller's cwd may not be readable by the postgres user.
    const child = spawn(command, args, { cwd: '/', stdio: ['ignore', 'pipe', 'pipe'] });
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (chunk: Buffer) => (stdout += chunk.toString()));
    child.stderr.on('data', (chunk: Buffer) => (stderr += chunk.toString()));
    child.once('error', (err) => reject(new ClusterError(`cannot run ${command}: ${err.message}`)));
    child.once('close', (code, signal) => resolveRun({ code: code ?? (signal ? 128 : 1), stdout, stderr }));
  });
}

async function withClient<T>(url: string, fn: (client: pg.Client) => Promise<T>): Promise<T> {
  const client = new pg.Client({ connectionString: url });
  await client.connect();
  try {
    return await fn(client);
  } finally {
    await client.end();
  }
}
