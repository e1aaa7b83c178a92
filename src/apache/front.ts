import { execFileSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { chownSync, existsSync, mkdirSync, chmodSync, writeFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import type { PlexerConfig } from '../config.js';
import { createPool } from '../store/connect.js';
import { listGroups } from '../store/accounts.js';
import { startHttpd, type Httpd } from './httpd.js';
import { renderApacheConfig, type ApacheConfigOptions, type AuthMode, type RoutingMode } from './render.js';
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
  if (!existsSync(file)) writeFileSync(file, randomBytes(32).toString('base64url') + '\n', { mode: 0o600, flag: 'wx' });
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
      })),
      mapUser: 'www-data:www-data',
      tls: false,
      authCacheTimeoutSeconds: o.authCacheTimeoutSeconds ?? 60,
      ...(o.auth ? { auth: o.auth } : {}),
      ...(o.routing ? { routing: o.routing } : {}),
      ...(o.sessionMaxAgeSeconds !== undefined ? { sessionMaxAgeSeconds: o.sessionMaxAgeSeconds } : {}),
      ...(o.auth === 'form' && o.extra?.sessionPassphrase === undefined ? { sessionPassphraseFile: ensureSessionKeyFile(join(apacheDir, 'session.key')) } : {}),
      ...o.extra,
    });
  } finally {
    await pool.end();
  }
}

export async function startFront(o: FrontOptions): Promise<Front> {
  const apacheDir = join(o.stateDir, 'apache');
  mkdirSync(join(apacheDir, 'data'), { recursive: true });
  chmodSync(o.stateDir, 0o755);
  chmodSync(apacheDir, 0o755);
  // Each tenant's Django writes its own SQLite file here, as www-data.
  const id = (flag: string) => Number(execFileSync('id', [flag, 'www-data'], { encoding: 'utf8' }).trim());
  chownSync(join(apacheDir, 'data'), id('-u'), id('-g'));
  const runtime = prepareRuntime(o.stateDir);
  const httpd = await startHttpd({ config: await renderFromStore(o, runtime, apacheDir), dir: apacheDir });
  return {
    httpd,
    runtime,
    apacheDir,
    async reconfigure() {
      writeFileSync(httpd.configPath, await renderFromStore(o, runtime, apacheDir));
      await httpd.graceful();
    },
    stop: () => httpd.stop(),
  };
}
