import { chownSync, existsSync, lstatSync, mkdirSync, chmodSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { join } from 'node:path';
import type { PlexerConfig } from '../config.js';
import { FileError, ServiceStartError } from '../errors.js';
import { writeFileAtomic } from '../files.js';
import { createPool } from '../store/connect.js';
import { listAccounts } from '../store/accounts.js';
import { apacheOwner } from '../tenant-users.js';
import { startHttpd, type Httpd } from './httpd.js';
import { renderApacheConfig, type ApacheConfigOptions, type AuthMode, type RoutingMode } from '../apache/render/index.js';
import { configAccounts, prepareAccountDirs } from '../apache/accounts.js';
import { dataDirIn, type Runtime } from '../apache/install-paths.js';
import { ensureSessionKeyFile, sessionKeyOptions } from '../apache/session-key.js';
import { sessionDatabaseFrom } from '../apache/session-dbd.js';
import { prepareRuntime } from './runtime.js';
import { preparePool } from '../pool/prepare.js';
import { DEFAULT_POOL_PREFIX, poolFiles } from '../pool/names.js';
import { startLoginCacheServer, type LoginCacheServer } from './login-cache-server.js';

// One private Apache in front of a plexer store, configured from the accounts in the database: what the demo
// runs and what the end-to-end tests drive.
export interface FrontOptions {
  stateDir: string;
  configPath: string;
  config: PlexerConfig;
  port: number;
  settingsFrom?: 'map' | 'config';
  authCacheTimeoutSeconds?: number;
  // Modes (src/apache/render/): default Basic + mod_wsgi. Form login gets a random session passphrase in a root-only
  // file STATE-DIR/apache/session.key unless `extra` names one.
  auth?: AuthMode;
  routing?: RoutingMode;
  sessionMaxAgeSeconds?: number;
  // Apache's login cache in a private memcached (STATE-DIR/logins), started before Apache and stopped after it.
  loginCache?: boolean;
  extra?: Partial<ApacheConfigOptions>;
}

export interface Front {
  httpd: Httpd;
  // The login cache's memcached, when loginCache was asked for.
  loginCache?: LoginCacheServer;
  // Where `plexer lockout` keeps this front's lock files.
  lockDir: string;
  runtime: Runtime;
  apacheDir: string;
  // Re-renders from the current accounts and reloads gracefully (what `plexer apache config --reload` does).
  reconfigure(): Promise<void>;
  stop(): Promise<void>;
}

export async function renderFromStore(o: FrontOptions, runtime: Runtime, apacheDir: string): Promise<string> {
  const pool = createPool(o.config, { max: 1 });
  try {
    const accounts = await listAccounts(pool);
    const slots = o.extra?.pool;
    // A pool's accounts get their data directories from the binder, when bound.
    if (slots) preparePool({ slots: slots.slots, prefix: slots.prefix ?? DEFAULT_POOL_PREFIX, stateDir: apacheDir });
    else prepareAccountDirs(o.extra?.dataDir ?? dataDirIn(apacheDir), accounts);
    return renderApacheConfig({
      listenAddress: '127.0.0.1',
      port: o.port,
      serverName: 'localhost',
      stateDir: apacheDir,
      plexerCommand: runtime.plexerCommand,
      configFile: o.configPath,
      wsgiScript: runtime.wsgiScript,
      pythonPath: runtime.pythonPath,
      errorPagesDir: runtime.errorPagesDir,
      accounts: configAccounts(accounts, o.settingsFrom ?? 'map'),
      mapUser: 'www-data:www-data',
      tls: false,
      authCacheTimeoutSeconds: o.authCacheTimeoutSeconds ?? 60,
      ...(o.auth ? { auth: o.auth } : {}),
      ...(o.routing ? { routing: o.routing } : {}),
      ...(o.sessionMaxAgeSeconds !== undefined ? { sessionMaxAgeSeconds: o.sessionMaxAgeSeconds } : {}),
      ...(o.auth === 'form' && o.extra?.sessionPassphrase === undefined
        ? sessionKeyOptions(ensureSessionKeyFile(join(apacheDir, 'session.key')))
        : {}),
      // Server-side sessions, so logout ends every copy of one (o.extra may choose the cookie store).
      ...(o.auth === 'form' ? { sessionDatabase: sessionDatabaseFrom(o.config) } : {}),
      ...o.extra,
    });
  } finally {
    await pool.end();
  }
}

// plexer.conf holds the database credentials: Apache's helpers (www-data) read it, tenants (their own users)
// must not. Whoever wrote it, the front end it starts gives it that shape.
export function secureConfigFile(path: string): void {
  if (!lstatSync(path).isFile()) throw new FileError(`${path} is not a regular file`);
  chownSync(path, 0, apacheOwner().gid);
  chmodSync(path, 0o640);
}

const SHM_PREFIX = '/dev/shm/plexer-';

// The lock directory a front that was killed left: removed only if it is what a front makes (a directory of
// root's under /dev/shm named by mkdtemp), whatever the note says.
function removeStaleLocks(note: string): void {
  let dir: string;
  try {
    dir = readFileSync(note, 'utf8').trim();
  } catch {
    return;
  }
  if (/^\/dev\/shm\/plexer-[A-Za-z0-9]{6}$/.test(dir)) {
    try {
      const found = lstatSync(dir);
      if (found.isDirectory() && found.uid === 0) rmSync(dir, { recursive: true, force: true });
    } catch {
      // Gone already (a reboot empties /dev/shm).
    }
  }
  rmSync(note, { force: true });
}

async function untilExists(path: string, limitMs: number, errorLog: () => string): Promise<void> {
  const until = Date.now() + limitMs;
  while (!existsSync(path)) {
    if (Date.now() > until) throw new ServiceStartError(`plexer binder did not listen on ${path}:\n${errorLog().slice(-2000)}`);
    await new Promise((resolve) => setTimeout(resolve, 50));
  }
}

export async function startFront(o: FrontOptions): Promise<Front> {
  const apacheDir = join(o.stateDir, 'apache');
  mkdirSync(apacheDir, { recursive: true });
  // Traversable, not listable: www-data reaches the runtime copy, the wsgi sockets and the data directories by
  // name; a tenant cannot list what is there, and every file in here is closed to it by its own mode.
  chmodSync(o.stateDir, 0o711);
  chmodSync(apacheDir, 0o711);
  secureConfigFile(o.configPath);
  // "nobody" (no groups): the code must be readable by every tenant's own user too, not only by www-data.
  const runtime = prepareRuntime(o.stateDir, 'nobody');
  // Lock files on tmpfs, as the generated default has them (/run/plexer/locks, options.ts lockDir), but one
  // directory per front: several run side by side here. A random name made by root, so no other local user can
  // have put a directory or a link there first (/dev/shm is world-writable). Its name is kept in the state
  // directory, so that the next front there removes the one a killed front left.
  const lockDirNote = join(apacheDir, 'lock-dir');
  removeStaleLocks(lockDirNote);
  const ownLocks = o.extra?.lockDir === undefined ? mkdtempSync(SHM_PREFIX) : undefined;
  if (ownLocks !== undefined) {
    chmodSync(ownLocks, 0o711);
    writeFileAtomic(lockDirNote, `${ownLocks}\n`, { mode: 0o600, owner: { uid: 0, gid: 0 } });
  }
  const lockDir = o.extra?.lockDir ?? join(ownLocks!, 'locks');
  const loginCache = o.loginCache ? await startLoginCacheServer(join(o.stateDir, 'logins')) : undefined;
  const options: FrontOptions = {
    ...o,
    extra: { ...o.extra, lockDir, ...(loginCache ? { loginCacheSocket: loginCache.socket } : {}) },
  };
  const removeLocks = () => {
    if (ownLocks === undefined) return;
    rmSync(ownLocks, { recursive: true, force: true });
    rmSync(lockDirNote, { force: true });
  };
  let httpd: Httpd | undefined;
  try {
    httpd = await startHttpd({ config: await renderFromStore(options, runtime, apacheDir), dir: apacheDir });
    // Apache starts the binder with its piped loggers; until it listens an account's first request gets a 503.
    if (o.extra?.pool) await untilExists(poolFiles(apacheDir).socket, 30_000, httpd.errorLog);
  } catch (error) {
    // An Apache that started but is of no use is stopped, not left running.
    await httpd?.stop().catch(() => undefined);
    await loginCache?.stop();
    removeLocks();
    throw error;
  }
  const started = httpd;
  return {
    httpd: started,
    ...(loginCache ? { loginCache } : {}),
    lockDir,
    runtime,
    apacheDir,
    async reconfigure() {
      writeFileAtomic(started.configPath, await renderFromStore(options, runtime, apacheDir), { mode: 0o600, owner: { uid: 0, gid: 0 } });
      await started.graceful();
    },
    stop: async () => {
      try {
        await started.stop();
      } finally {
        await loginCache?.stop();
        removeLocks();
      }
    },
  };
}
