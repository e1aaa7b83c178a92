import type { Account } from '../../accounts/model.js';
import type { SessionDatabase } from '../session-dbd.js';

/** The slot pool (apache/POOL.md, "Accounts and slots"): slots bound to accounts on demand by `plexer binder`. */
export interface PoolOptions {
  slots: number; // how many mod_wsgi daemon groups (slot-1 … slot-N), each with its own OS user
  prefix?: string; // of the pool's OS names (src/pool/names.ts), default "plexer"
  waitSeconds?: number; // how long a request waits when every slot is busy before our 503, default 10
  minIdleSeconds?: number; // a bound slot is taken for another account only after this long unused, default 0
  spares?: number; // free slots the binder keeps, emptied from accounts idle spareIdleSeconds; default one in eight slots
  spareIdleSeconds?: number; // how long an account is idle before its slot may become a spare, default 30
}

/** A URL path under the mount that additionally needs one of `roles` (wsgi routing only). */
export interface RoleLocation {
  // URL path under the mount (e.g. "/app/admin") that additionally needs one of `roles`.
  path: string;
  roles: string[];
}

/** Everything renderApacheConfig needs; every value is validated before it reaches the text (validate.ts). */
export interface ApacheConfigOptions {
  listenAddress: string; // e.g. "127.0.0.1", or "*" (every address)
  port: number;
  serverName: string;
  // Apache's own runtime + log directory: pid file, mutexes, mod_wsgi sockets, shmcb cache, logs. Must exist,
  // be owned by root and be traversable (o+x) by the run user (mod_wsgi sockets are chowned to it).
  // Keep it short: mod_wsgi's socket paths (DIR/wsgi.PID.GEN.N.sock) must fit in 108 bytes.
  stateDir: string;
  // The root of the accounts' data directories: account A keeps its data in `${dataDir}/A` (0700, owned by the
  // user A's slot runs as; created by src/tenant-users.ts ensureAccountDataDir), which the WSGI script hands to
  // Django as PLEXER_DATA_DIR (Apache passes it the root as PLEXER_DATA_ROOT). Default: `${stateDir}/data`.
  dataDir?: string;
  // Where `plexer lockout` keeps one empty file per lockout in force and every authenticated request looks
  // (src/lockout/lock-files.ts). Must be on tmpfs: the file is made while the guesser's next request is on its
  // way, and creating a file on a journaled file system can wait behind other processes' fsyncs (measured on
  // this project's machines: p50 2.5 ms, max 46 ms under an fsync load, against 0.05 ms on tmpfs). Default
  // /run/plexer/locks (tmpfs on Debian; made by the logger as root, 0711). Two Apaches on one host need two.
  lockDir?: string;
  // Absolute program + arguments that start plexer, e.g. ["/usr/bin/node", "/opt/plexer/bin/plexer"].
  // Apache starts prg: maps with an EMPTY environment, so nothing here may rely on PATH.
  plexerCommand: string[];
  configFile: string; // plexer.conf, passed as --config to every helper
  wsgiScript: string; // absolute path of apache/wsgi/plexer.wsgi (or a copy)
  pythonPath: string; // directory holding the Django project (apache/example)
  errorPagesDir: string; // directory holding 401.html 403.html 429.html 500.html 503.html (apache/errors)
  mountPath?: string; // URL prefix of the application, default "/app"
  accounts: Account[];
  // Set: wsgi and prefix routing use a pool of slots bound to accounts on demand, and `accounts` is not rendered
  // (accounts come and go without a reload). Unset: a slot of its own per enabled account (ownSlotPerAccount).
  pool?: PoolOptions;
  mapUser: string; // "www-data:www-data": the USER:GROUP the prg: maps run as (Apache >= 2.4.29)
  runUser?: string; // Apache's worker + WSGI daemon user, default "www-data"
  runGroup?: string; // default "www-data"
  tls: boolean;
  tlsCertificateFile?: string; // required when tls
  tlsCertificateKeyFile?: string; // required when tls
  authCacheTimeoutSeconds: number; // AuthnCacheTimeout: how long a revoked password keeps working
  // Apache's login cache in memcached on this unix socket instead of its shared memory: it outlives graceful
  // reloads, and `plexer revoke` removes a changed user's logins at once (apache/LOGINS.md, "Logins that survive a reload").
  loginCacheSocket?: string;
  // `plexer authn` asks a long-running `plexer checker` (started as a piped logger) instead of checking by itself:
  // a cache miss then costs a Node start and a round trip (apache/LOGINS.md, "Cheap checks when the cache misses").
  loginChecker?: boolean;
  // Proxies (IP or CIDR) whose X-Forwarded-For names the client (mod_remoteip); from anyone else it is ignored.
  trustedProxies?: string[];
  authRealm?: string; // default "plexer"
  roleLocations?: RoleLocation[];
  wsgiThreads?: number; // threads per daemon process, default 4
  logLevel?: string; // Apache LogLevel, default "warn"
  modulesDir?: string; // default "/usr/lib/apache2/modules" (Debian)
  layout?: ApacheLayout; // default 'standalone'
  // Debian layout: whether the site opens its own port with a Listen line (ports.conf opens 80 and 443; a
  // second Listen on a port ports.conf already opens makes Apache fail to start). Standalone always listens.
  listen?: boolean;

  // ---- Modes (defaults: Basic authentication + mod_wsgi routing, the original behaviour) -------------------
  // 'basic': HTTP Basic via mod_authnz_external. 'form': a login page + mod_auth_form; the user and password
  // live in an encrypted, MACed session cookie (mod_session_crypto) and are re-checked by the provider
  // (socache, then the external authenticator) on every request. Routing is the same in both: only the
  // authenticated REMOTE_USER, never the cookie, chooses the instance.
  auth?: AuthMode;
  // 'wsgi': a mod_wsgi slot per account (map group). 'proxy': mod_proxy to the account's `backend`
  // column (map backend), e.g. unix:/run/x.sock|fcgi://localhost/ or http://127.0.0.1:8001/. 'prefix': like
  // wsgi, but /app/x is first rewritten internally to /u/USER/app/x (distinct, cacheable URLs per user);
  // a request for another user's prefix gets our 403.
  routing?: RoutingMode;
  // Where the maps come from. Unset: the prg: programs (`plexer map …`), live within milliseconds but one
  // process serializing every lookup of the server. Set: Apache's own dbm: maps in this directory, kept
  // current by `plexer sync --dir DIR` (GDBM files, replaced atomically; no lock, no helper process per lookup;
  // changes arrive after a rebuild, ~0.2 s for thousands of users). The files must exist before Apache starts
  // (run `plexer sync --once` first).
  mapDir?: string;
  // wsgi/prefix routing with accounts that take their settings from the map (settingsModule null), prg: maps:
  // one `plexer map route` lookup answers the account and its settings together ("#alice=alpha tenants.alpha"),
  // one trip through the server-wide map lock per request. true: `plexer map group`, then `plexer map
  // settings` for the account, two lookups. dbm: maps are always the two files (a lookup there takes no lock).
  twoMaps?: boolean;
  // Form mode: exactly one of these. The file (root-only, read by Apache's root parent at start) keeps the
  // secret out of the config, which the run user can read; the inline value is for tests.
  sessionPassphraseFile?: string;
  sessionPassphrase?: string;
  // Form mode: a secret of this install (hex; session-key.ts formFieldSecret) that names the credential fields of
  // the application sections, where mod_auth_form would otherwise take credentials posted to any application URL
  // and check them with the cache, uncounted. Required with sessionPassphraseFile; with an inline passphrase
  // (tests) it is derived from that.
  formFieldSecret?: string;
  sessionMaxAgeSeconds?: number; // idle lifetime of a session cookie, default 28800 (8 h)
  // Form mode: set, sessions live server-side in plexer's PostgreSQL (mod_session_dbd; the cookie holds a key
  // only), so logout ends every copy of a session. Unset: the whole (encrypted) session is the cookie, and a
  // copy keeps working until it expires.
  sessionDatabase?: SessionDatabase;
  // A TLS-terminating proxy is in front (Apache itself speaks http): cookies get Secure and the login's
  // Origin check expects https://, as with tls.
  tlsProxy?: boolean;
  loginPagesDir?: string; // directory holding login.html, default: sibling "login" of errorPagesDir
  loginSuccessPath?: string; // where a successful login lands, default `${mountPath}/`
  // Proxy mode: an empty directory the mount is aliased to, so the per-directory rules (which run after
  // authentication and see REMOTE_USER) have a <Directory> to live in. Default: sibling "mount" of errorPagesDir.
  proxyMountDir?: string;
  proxyTimeoutSeconds?: number; // ProxyTimeout, default 60
  // mod_qos QS_SrvMaxConnPerIP: open connections one client address may hold (a slow client holds a prefork
  // worker per connection). Default 20 of the standalone layout's 32 workers; 0 = no limit (mod_qos not loaded).
  connectionsPerAddress?: number;
  // The command that rendered this config (`plexer apache config …`), written as a comment so that the commands
  // that need a re-render (group add) can print it to paste. Absent: no such line.
  renderedBy?: string;
  // Prefix mode: the internal URL prefix, default "/u" (/app/x -> /u/USER/app/x).
  userPrefix?: string;
}

export type AuthMode = 'basic' | 'form';
export type ApacheLayout = 'standalone' | 'debian';
export type RoutingMode = 'wsgi' | 'proxy' | 'prefix';

// URL paths of the form-login pieces (all outside the mount, served without authentication).
export const LOGIN_PAGE_PATH = '/_plexer/login/login.html';
export const LOGIN_HANDLER_PATH = '/_plexer/form-login-handler';
export const LOGOUT_PATH = '/_plexer/logout';
export const SESSION_COOKIE_NAME = 'plexer_session';
