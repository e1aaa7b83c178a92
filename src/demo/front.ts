import { randomBytes } from 'node:crypto';
import { chownSync, existsSync, lstatSync, mkdirSync, chmodSync } from 'node:fs';
import { dirname, join } from 'node:path';
import type { PlexerConfig } from '../config.js';
import { FileError, RunAsError } from '../errors.js';
import { FileExistsError, writeFileAtomic } from '../files.js';
import { createPool } from '../store/connect.js';
import { listGroups, type GroupRow } from '../store/accounts.js';
import { apacheOwner, checkTenantAccount, ensureTenantDataDir, lookupAccount, parseRunAs } from '../tenant-users.js';
import { startHttpd, type Httpd } from './httpd.js';
import { renderApacheConfig, type ApacheConfigOptions, type AuthMode, type RoutingMode } from '../apache/render.js';
import { sessionDatabaseFrom } from '../apache/session-dbd.js';
import { prepareRuntime, type Runtime } from './runtime.js';

// One private Apache in front of a plexer store, configured from the groups in the database: what the demo
// runs and what the end-to-end tests drive.
export interface FrontOptions {
  stateDir: string;
  configPath: string;
  config: PlexerConfig;
  port: number;
  settingsFrom?: 'map' | 'config';
  authCacheTimeoutSeconds?: number;
  // Modes (render.ts): default Basic + mod_wsgi. Form login gets a random session passphrase in a root-only
  // file STATE-DIR/apache/session.key unless `extra` names one.
  auth?: AuthMode;
  routing?: RoutingMode;
  sessionMaxAgeSeconds?: number;
  extra?: Partial<ApacheConfigOptions>;
}

// A session passphrase for form login: 32 random bytes, base64url, in a file only root can read (Apache's
// parent reads it at start as root; the run user, and with it every tenant, cannot). Kept across restarts so
// sessions survive a reload; delete the file to log everyone out.
export function ensureSessionKeyFile(file: string): string {
  mkdirSync(dirname(file), { recursive: true });
  if (!existsSync(file)) {
    try {
      // exclusive: a key another process wrote meanwhile (and Apache may already use) is kept.
      writeFileAtomic(file, randomBytes(32).toString('base64url') + '\n', { mode: 0o600, owner: { uid: 0, gid: 0 }, exclusive: true });
    } catch (error) {
      if (!(error instanceof FileExistsError)) throw error;
    }
  }
  // chmod/chown follow symlinks: a key that is not a plain file is refused rather than given to root.
  if (!lstatSync(file).isFile()) throw new FileError(`${file} is not a regular file; remove it and run again`);
  chmodSync(file, 0o600);
  chownSync(file, 0, 0);
  return file;
}

export interface Front {
  httpd: Httpd;
  runtime: Runtime;
  apacheDir: string;
  // Re-renders from the current groups and reloads gracefully (what `plexer apache config --reload` does).
  reconfigure(): Promise<void>;
  stop(): Promise<void>;
}

export async function renderFromStore(o: FrontOptions, runtime: Runtime, apacheDir: string): Promise<string> {
  const pool = createPool(o.config, { max: 1 });
  try {
    const groups = await listGroups(pool);
    prepareTenantDirs(o.extra?.dataDir ?? join(apacheDir, 'data'), groups);
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
      groups: groups.map((g) => ({
        name: g.name,
        settingsModule: o.settingsFrom === 'config' ? g.settings_module : null,
        enabled: g.enabled,
        runAs: g.run_as,
      })),
      mapUser: 'www-data:www-data',
      tls: false,
      authCacheTimeoutSeconds: o.authCacheTimeoutSeconds ?? 60,
      ...(o.auth ? { auth: o.auth } : {}),
      ...(o.routing ? { routing: o.routing } : {}),
      ...(o.sessionMaxAgeSeconds !== undefined ? { sessionMaxAgeSeconds: o.sessionMaxAgeSeconds } : {}),
      ...(o.auth === 'form' && o.extra?.sessionPassphrase === undefined ? { sessionPassphraseFile: ensureSessionKeyFile(join(apacheDir, 'session.key')) } : {}),
      // Server-side sessions, so logout ends every copy of one (o.extra may choose the cookie store).
      ...(o.auth === 'form' ? { sessionDatabase: sessionDatabaseFrom(o.config) } : {}),
      ...o.extra,
    });
  } finally {
    await pool.end();
  }
}

// Each group's own data directory (DATA-DIR/GROUP, 0700), owned by its run-as account, or by www-data for a
// group without one. The account must exist and pass the same checks as "plexer group --run-as".
export function prepareTenantDirs(dataDir: string, groups: GroupRow[]): void {
  for (const g of groups) {
    let owner = apacheOwner();
    if (g.run_as) {
      const account = lookupAccount(parseRunAs(g.run_as));
      if (!account) throw new RunAsError(`daemon group ${g.name} runs as "${g.run_as}", which does not exist on this machine: create it (plexer group set ${g.name} --run-as ${g.run_as} --create-user)`);
      checkTenantAccount(account);
      owner = account;
    }
    ensureTenantDataDir(dataDir, g.name, owner);
  }
}

// plexer.conf holds the database credentials: Apache's helpers (www-data) read it, tenants (their own users)
// must not. Whoever wrote it, the front end it starts gives it that shape.
export function secureConfigFile(path: string): void {
  if (!lstatSync(path).isFile()) throw new FileError(`${path} is not a regular file`);
  chownSync(path, 0, apacheOwner().gid);
  chmodSync(path, 0o640);
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
  const httpd = await startHttpd({ config: await renderFromStore(o, runtime, apacheDir), dir: apacheDir });
  return {
    httpd,
    runtime,
    apacheDir,
    async reconfigure() {
      writeFileAtomic(httpd.configPath, await renderFromStore(o, runtime, apacheDir), { mode: 0o600, owner: { uid: 0, gid: 0 } });
      await httpd.graceful();
    },
    stop: () => httpd.stop(),
  };
}
