import { isIP } from 'node:net';
import { GROUP_NAME_PATTERN, ROLE_NAME_PATTERN, RUN_AS_PATTERN, SETTINGS_MODULE_PATTERN, USER_NAME_PATTERN } from '../names.js';
import { ANSWER_MARK } from '../protocol/rewrite-map.js';
import { lockFileChecks } from '../lockout/lock-files.js';
import type { SessionDatabase } from './session-dbd.js';

// Renders one httpd configuration in one of two layouts. 'standalone' (the default; the demo, the tests, the
// benchmark): complete for Debian's /usr/sbin/apache2 binary, no Include of /etc/apache2, no envvars, no
// ServerRoot-relative paths. 'debian': a site for /etc/apache2/sites-available that leaves everything global to
// Debian's apache2.conf (ServerRoot, PidFile, Mutex, User, the main ErrorLog, the modules and the MPM, which
// a2enmod enables: apacheModules() lists them) and logs to ${APACHE_LOG_DIR}, where logrotate looks; the
// daemon groups, the maps and the virtual host are the same in both. The function is pure (no file system, no clock, no
// environment) so the same options always give the same text; callers write it to a file and run
// `/usr/sbin/apache2 -f FILE -k start|graceful|stop`.
//
// Routing idiom (verified against a real Apache 2.4.71 + mod_wsgi 4.9.4, see test/apache-prototype.test.ts):
//   vhost level:        RewriteMap plexer_group "prg:…" www-data:www-data  +  RewriteEngine On
//   <Directory> of the WSGI script (per-directory rules run AFTER authentication, so REMOTE_USER is set):
//                       RewriteRule ^ - [E=PROCESS_GROUP:${plexer_group:%{REMOTE_USER}|_none_}]
//                       … our own 403/503 for a sentinel / unknown / disabled group …
//                       WSGIProcessGroup %{ENV:PROCESS_GROUP}
// Nothing the client sends reaches PROCESS_GROUP: request headers become HTTP_* variables, query strings and
// cookies never become environment variables, and the rule overwrites the variable unconditionally.

export interface ApacheGroup {
  // The mod_wsgi daemon process group; must match GROUP_NAME_PATTERN (src/names.ts).
  name: string;
  // The Django settings module every process of the group runs with. null: ask the settings map
  // (`plexer map settings`) on each request instead of rendering it into the config.
  settingsModule: string | null;
  // false: no daemon is started for the group and its users get our 503 page ("temporarily unavailable").
  enabled: boolean;
  // The group's own OS account, "user" or "user:group" (RUN_AS_PATTERN; "user" alone means group "user").
  // Unset or null: runUser/runGroup, shared with Apache's workers and every other such group.
  runAs?: string | null;
}

export interface RoleLocation {
  // URL path under the mount (e.g. "/app/admin") that additionally needs one of `roles`.
  path: string;
  roles: string[];
}

export interface ApacheConfigOptions {
  listenAddress: string; // e.g. "127.0.0.1", or "*" (every address)
  port: number;
  serverName: string;
  // Apache's own runtime + log directory: pid file, mutexes, mod_wsgi sockets, shmcb cache, logs. Must exist,
  // be owned by root and be traversable (o+x) by the run user (mod_wsgi sockets are chowned to it).
  // Keep it short: mod_wsgi's socket paths (DIR/wsgi.PID.GEN.N.sock) must fit in 108 bytes.
  stateDir: string;
  // The root of the tenants' data directories: group G keeps its data in `${dataDir}/G` (0700, owned by G's
  // run-as user; created by src/tenant-users.ts ensureTenantDataDir), which the WSGI script hands to Django as
  // PLEXER_DATA_DIR (Apache passes it the root as PLEXER_DATA_ROOT). Default: `${stateDir}/data`.
  dataDir?: string;
  // Absolute program + arguments that start plexer, e.g. ["/usr/bin/node", "/opt/plexer/bin/plexer"].
  // Apache starts prg: maps with an EMPTY environment, so nothing here may rely on PATH.
  plexerCommand: string[];
  configFile: string; // plexer.conf, passed as --config to every helper
  wsgiScript: string; // absolute path of apache/wsgi/plexer.wsgi (or a copy)
  pythonPath: string; // directory holding the Django project (apache/example)
  errorPagesDir: string; // directory holding 401.html 403.html 500.html 503.html (apache/errors)
  mountPath?: string; // URL prefix of the application, default "/app"
  groups: ApacheGroup[];
  mapUser: string; // "www-data:www-data": the USER:GROUP the prg: maps run as (Apache >= 2.4.29)
  runUser?: string; // Apache's worker + WSGI daemon user, default "www-data"
  runGroup?: string; // default "www-data"
  tls: boolean;
  tlsCertificateFile?: string; // required when tls
  tlsCertificateKeyFile?: string; // required when tls
  authCacheTimeoutSeconds: number; // AuthnCacheTimeout: how long a revoked password keeps working
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
  // 'wsgi': one mod_wsgi daemon group per tenant (map group). 'proxy': mod_proxy to the group's `backend`
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
  // wsgi/prefix routing with groups that take their settings from the map (settingsModule null), prg: maps:
  // one `plexer map route` lookup answers the group and its settings together ("#alice=alpha tenants.alpha"),
  // one trip through the server-wide map lock per request. true: `plexer map group`, then `plexer map
  // settings` for the group, two lookups. dbm: maps are always the two files (a lookup there takes no lock).
  twoMaps?: boolean;
  // Form mode: exactly one of these. The file (root-only, read by Apache's root parent at start) keeps the
  // secret out of the config, which the run user can read; the inline value is for tests.
  sessionPassphraseFile?: string;
  sessionPassphrase?: string;
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
// The request header that tells an http:// backend who the user is (fcgi backends also get REMOTE_USER).
export const USER_HEADER = 'X-Plexer-User';

// The backend answers the proxy rule accepts (the store's CHECK allows more: https, uwsgi, scgi; those get our
// 503 here because their modules are not loaded): unix:/socket|http://localhost or |fcgi://localhost, or
// http:// or fcgi:// HOST[:PORT], each with an optional path. Kept in step with BACKEND_PATTERN (src/names.ts).
export const PROXY_BACKEND_REGEX =
  '^(unix:/[A-Za-z0-9._/-]{1,200}\\|(http|fcgi)://localhost|(http|fcgi)://([A-Za-z0-9.-]{1,253}|\\[[0-9A-Fa-f:]{2,39}\\])(:[0-9]{1,5})?)(/[A-Za-z0-9._~%/-]*)?$';

// What PROCESS_GROUP / PLEXER_BACKEND hold until an answer for the authenticated user sets them: a dead map
// (""), an answer to another key, anything unexpected. It can never be a group name (GROUP_NAME_PATTERN starts
// with a letter) nor a backend, so it always ends in our 503.
export const UNROUTED_SENTINEL = '_unrouted_';

const SAFE_PATH = /^\/[A-Za-z0-9._\/+@=,-]*$/;
const SAFE_WORD = /^[A-Za-z0-9._:+@=-]+$/;
const SAFE_URL_PATH = /^\/[A-Za-z0-9._\/-]*$/;
const MODULE_REGEX = '^[A-Za-z_][A-Za-z0-9_]*(\\.[A-Za-z_][A-Za-z0-9_]*)*$';

// Sized for a 2-core box; shared with the benchmark so every variant runs under the same MPM settings.
export const PREFORK_DIRECTIVES: readonly string[] = [
  '<IfModule mpm_prefork_module>',
  '    StartServers 4',
  '    MinSpareServers 2',
  '    MaxSpareServers 8',
  '    ServerLimit 32',
  '    MaxRequestWorkers 32',
  '    MaxConnectionsPerChild 0',
  '</IfModule>',
  '# Prefork holds a process per idle keep-alive connection: keep idle ones short.',
  'KeepAliveTimeout 2',
];

export class ApacheConfigError extends Error {
  override name = 'ApacheConfigError';
}

// Everything interpolated into the config is validated here, so no option can inject a directive, break out
// of a quoted string, trigger ${VAR} expansion or split a prg: command line (Apache splits it on whitespace
// and offers no quoting).
function path(label: string, value: string | undefined): string {
  if (value === undefined || !SAFE_PATH.test(value) || value.includes('//') || /(^|\/)\.\.?(\/|$)/.test(value)) {
    throw new ApacheConfigError(`${label} must be an absolute, normalised path of [A-Za-z0-9._/+@=,-]: ${JSON.stringify(value)}`);
  }
  return value.length > 1 ? value.replace(/\/$/, '') : value;
}

function word(label: string, value: string | undefined): string {
  if (value === undefined || !SAFE_WORD.test(value)) throw new ApacheConfigError(`${label} is not a safe word: ${JSON.stringify(value)}`);
  return value;
}

// An IP literal or a CIDR block, the forms RemoteIPInternalProxy takes.
function cidr(value: string): string {
  const [address, bits, extra] = value.split('/');
  const family = isIP(address ?? '');
  const maxBits = family === 6 ? 128 : 32;
  if (family === 0 || extra !== undefined || (bits !== undefined && !(/^\d{1,3}$/.test(bits) && Number(bits) <= maxBits))) {
    throw new ApacheConfigError(`trusted proxy must be an IP address or a CIDR block: ${JSON.stringify(value)}`);
  }
  return value;
}

function sessionDatabase(d: SessionDatabase): SessionDatabase {
  if (!/^[^"\\$\x00-\x1f\x7f]{1,2000}$/.test(d.conninfo)) throw new ApacheConfigError('sessionDatabase.conninfo may not hold quotes, backslashes, $ or control characters');
  return { conninfo: d.conninfo, schema: word('sessionDatabase.schema', d.schema) };
}

function positiveInt(label: string, value: number, max: number): number {
  if (!Number.isInteger(value) || value < 1 || value > max) throw new ApacheConfigError(`${label} must be an integer in 1..${max}: ${value}`);
  return value;
}

function validate(o: ApacheConfigOptions) {
  const stateDir = path('stateDir', o.stateDir);
  const groups = o.groups.map((g) => {
    if (!GROUP_NAME_PATTERN.test(g.name)) throw new ApacheConfigError(`invalid group name ${JSON.stringify(g.name)}`);
    if (g.settingsModule !== null && !SETTINGS_MODULE_PATTERN.test(g.settingsModule)) {
      throw new ApacheConfigError(`invalid settings module ${JSON.stringify(g.settingsModule)} for group ${g.name}`);
    }
    if (g.runAs != null && (!RUN_AS_PATTERN.test(g.runAs) || /(^|:)root(:|$)/.test(g.runAs))) {
      throw new ApacheConfigError(`invalid run-as ${JSON.stringify(g.runAs)} for group ${g.name}`);
    }
    return g;
  });
  const seen = new Set<string>();
  for (const g of groups) {
    if (seen.has(g.name)) throw new ApacheConfigError(`duplicate group ${g.name}`);
    seen.add(g.name);
  }
  if (o.plexerCommand.length < 1) throw new ApacheConfigError('plexerCommand is empty');
  const plexerCommand = o.plexerCommand.map((part, i) => (i === 0 ? path('plexerCommand[0]', part) : i === 1 && part.startsWith('/') ? path('plexerCommand[1]', part) : word(`plexerCommand[${i}]`, part)));
  const mapUser = o.mapUser;
  if (!/^[a-z_][a-z0-9_-]*:[a-z_][a-z0-9_-]*$/.test(mapUser)) throw new ApacheConfigError(`mapUser must be USER:GROUP: ${JSON.stringify(mapUser)}`);
  const mountPath = o.mountPath ?? '/app';
  if (!SAFE_URL_PATH.test(mountPath) || mountPath === '/' || mountPath.endsWith('/')) throw new ApacheConfigError(`invalid mountPath ${mountPath}`);
  const roleLocations = (o.roleLocations ?? []).map((r) => {
    if (!SAFE_URL_PATH.test(r.path) || !(r.path === mountPath || r.path.startsWith(mountPath + '/'))) {
      throw new ApacheConfigError(`role location ${JSON.stringify(r.path)} must be under ${mountPath}`);
    }
    if (r.roles.length === 0 || !r.roles.every((role) => ROLE_NAME_PATTERN.test(role))) throw new ApacheConfigError(`invalid roles for ${r.path}`);
    return r;
  });
  const authRealm = o.authRealm ?? 'plexer';
  if (!/^[A-Za-z0-9 ._-]{1,64}$/.test(authRealm)) throw new ApacheConfigError(`invalid authRealm ${JSON.stringify(authRealm)}`);
  const logLevel = o.logLevel ?? 'warn';
  if (!/^[a-z_:0-9 ]+$/.test(logLevel)) throw new ApacheConfigError(`invalid logLevel ${logLevel}`);
  const layout = o.layout ?? 'standalone';
  if (layout !== 'standalone' && layout !== 'debian') throw new ApacheConfigError(`layout must be standalone or debian: ${JSON.stringify(layout)}`);
  if (!/^[0-9.]+$|^\[[0-9a-fA-F:]+\]$|^\*$/.test(o.listenAddress)) throw new ApacheConfigError(`listenAddress must be an IP literal or *: ${o.listenAddress}`);
  const auth = o.auth ?? 'basic';
  if (auth !== 'basic' && auth !== 'form') throw new ApacheConfigError(`auth must be basic or form: ${JSON.stringify(auth)}`);
  const routing = o.routing ?? 'wsgi';
  if (!['wsgi', 'proxy', 'prefix'].includes(routing)) throw new ApacheConfigError(`routing must be wsgi, proxy or prefix: ${JSON.stringify(routing)}`);
  const errorPagesDir = path('errorPagesDir', o.errorPagesDir);
  const siblingOfErrors = (name: string) => `${errorPagesDir.replace(/\/[^/]+$/, '')}/${name}`;
  let sessionPassphrase: string | undefined;
  let sessionPassphraseFile: string | undefined;
  if (auth === 'form') {
    if ((o.sessionPassphrase === undefined) === (o.sessionPassphraseFile === undefined)) {
      throw new ApacheConfigError('form authentication needs exactly one of sessionPassphrase and sessionPassphraseFile');
    }
    if (o.sessionPassphrase !== undefined && !/^[A-Za-z0-9_-]{32,256}$/.test(o.sessionPassphrase)) {
      throw new ApacheConfigError('sessionPassphrase must be 32..256 characters of [A-Za-z0-9_-]');
    }
    sessionPassphrase = o.sessionPassphrase;
    if (o.sessionPassphraseFile !== undefined) sessionPassphraseFile = path('sessionPassphraseFile', o.sessionPassphraseFile);
  }
  const loginSuccessPath = o.loginSuccessPath ?? `${mountPath}/`;
  if (!SAFE_URL_PATH.test(loginSuccessPath)) throw new ApacheConfigError(`invalid loginSuccessPath ${loginSuccessPath}`);
  const userPrefix = o.userPrefix ?? '/u';
  if (!/^\/[a-z0-9_-]+$/.test(userPrefix) || userPrefix === '/_plexer' || mountPath === userPrefix || mountPath.startsWith(userPrefix + '/')) {
    throw new ApacheConfigError(`invalid userPrefix ${userPrefix}: one segment of [a-z0-9_-], not the mount`);
  }
  if (routing !== 'wsgi' && v0RoleCheck(o)) throw new ApacheConfigError('roleLocations are supported with routing wsgi only');
  return {
    auth,
    routing,
    sessionPassphrase,
    sessionPassphraseFile,
    sessionMaxAge: positiveInt('sessionMaxAgeSeconds', o.sessionMaxAgeSeconds ?? 28800, 31 * 86400),
    sessionDatabase: o.sessionDatabase === undefined ? undefined : sessionDatabase(o.sessionDatabase),
    httpsToClient: o.tls || o.tlsProxy === true,
    loginPagesDir: o.loginPagesDir === undefined ? siblingOfErrors('login') : path('loginPagesDir', o.loginPagesDir),
    loginSuccessPath,
    proxyMountDir: o.proxyMountDir === undefined ? siblingOfErrors('mount') : path('proxyMountDir', o.proxyMountDir),
    proxyTimeout: positiveInt('proxyTimeoutSeconds', o.proxyTimeoutSeconds ?? 60, 3600),
    userPrefix,
    listen: `${o.listenAddress}:${positiveInt('port', o.port, 65535)}`,
    serverName: word('serverName', o.serverName),
    stateDir,
    dataDir: o.dataDir === undefined ? `${stateDir}/data` : path('dataDir', o.dataDir),
    mapDir: o.mapDir === undefined ? undefined : path('mapDir', o.mapDir),
    command: plexerCommand.join(' '),
    configFile: path('configFile', o.configFile),
    wsgiScript: path('wsgiScript', o.wsgiScript),
    wsgiDir: path('wsgiScript', o.wsgiScript).replace(/\/[^/]+$/, '') || '/',
    pythonPath: path('pythonPath', o.pythonPath),
    errorPagesDir: path('errorPagesDir', o.errorPagesDir),
    mountPath,
    groups,
    mapUser,
    runUser: word('runUser', o.runUser ?? 'www-data'),
    runGroup: word('runGroup', o.runGroup ?? 'www-data'),
    tls: o.tls,
    cert: o.tls ? path('tlsCertificateFile', o.tlsCertificateFile) : undefined,
    key: o.tls ? path('tlsCertificateKeyFile', o.tlsCertificateKeyFile) : undefined,
    authCacheTimeout: positiveInt('authCacheTimeoutSeconds', o.authCacheTimeoutSeconds, 86400),
    trustedProxies: (o.trustedProxies ?? []).map(cidr),
    authRealm,
    roleLocations,
    wsgiThreads: positiveInt('wsgiThreads', o.wsgiThreads ?? 4, 64),
    logLevel,
    modulesDir: path('modulesDir', o.modulesDir ?? '/usr/lib/apache2/modules'),
    layout,
    ownListen: layout === 'standalone' || o.listen === true,
  };
}

function v0RoleCheck(o: ApacheConfigOptions): boolean {
  return (o.roleLocations ?? []).length > 0;
}

// Guards first: nothing but a well-formed user name is ever sent to a map. A name with "\n" would reach a prg:
// program as two keys, one with "," or "=" could forge the key check below; both are refused before any lookup.
function userNameGuard(): string[] {
  return [
    '        # 0. Only a well-formed user name is looked up (the same pattern the store enforces): our 403.',
    `        RewriteCond %{REMOTE_USER} !${USER_NAME_PATTERN.source}`,
    '        RewriteRule ^ - [F]',
  ];
}

export interface KeyedRoutingOptions {
  map: string; // the RewriteMap name
  key: string; // what is looked up, e.g. %{REMOTE_USER}; never holds "," (names cannot)
  answerVar: string; // env variable that holds the raw answer
  target: string; // env variable set to the value, only from an answer that names `key`
  // A route answer "GROUP SETTINGS": `target` gets the part before the first space, this the rest ("" if none;
  // \s in the rules: Apache's config parser would split a literal space).
  settingsTarget?: string;
  prg: boolean; // a prg: program (a shared pipe that can shift) rather than a dbm: file
  conds?: string[]; // conditions for the lookup (full lines)
  noValue?: string[]; // lines for an answer that names `key` but has no value ("alice=")
  indent?: string;
}

// Looks `key` up and sets `target` only from an answer that is "#" + that key + "=" + value: the test string
// "alice,#alice=alpha" must match ^([^,]*),#\1=(.+)$ (src/protocol/rewrite-map.ts says why the mark). For a
// prg: map, any other answer means the shared pipe is behind: a worker died between writing its key and
// reading its answer (or mid-read: even an empty answer can be the bare end of a line), and this lookup read
// what was meant for an earlier one; or the map is dead, and every lookup returns "" at once. The rules then
// ask again, up to DESYNC_RETRIES times: every line written is answered exactly once, so a retry can never wait
// for a line that will not come (mod_rewrite holds a server-wide lock while it waits), and after as many
// retries as answers were lost, the answer to our own key arrives. They also set PLEXER_DESYNC, which the
// watchdog's piped log receives: it reloads Apache gracefully a little later, which gives the maps fresh pipes
// (until then every lookup costs one more line per lost answer). A request still unanswered after the retries,
// or by a dead map, leaves `target` unset and ends in our 503, never in another user's instance.
// dbm: files have no pipe to fall behind; a key missing from the file counts as "known, no value".
export const DESYNC_RETRIES = 3;

export function keyedRouting(o: KeyedRoutingOptions): string[] {
  const i = o.indent ?? '        ';
  const pair = `"${o.key},%{ENV:${o.answerVar}}"`;
  const mark = ANSWER_MARK;
  const ask = `E=${o.answerVar}:\${${o.map}:${o.key}${o.prg ? '' : `|${mark}${o.key}=`}}`;
  const lines = [...(o.conds ?? []), `${i}RewriteRule ^ - [${ask}]`];
  if (o.prg) {
    for (let retry = 0; retry < DESYNC_RETRIES; retry++) {
      lines.push(`${i}RewriteCond ${pair} !^([^,]*),${mark}\\1=`, `${i}RewriteRule ^ - [E=PLEXER_DESYNC:1,${ask}]`);
    }
  }
  if (o.noValue) lines.push(`${i}RewriteCond ${pair} ^([^,]*),${mark}\\1=$`, ...o.noValue);
  if (o.settingsTarget) {
    lines.push(`${i}RewriteCond ${pair} ^([^,]*),${mark}\\1=(\\S+)\\s?(.*)$`, `${i}RewriteRule ^ - [E=${o.target}:%2,E=${o.settingsTarget}:%3]`);
  } else {
    lines.push(`${i}RewriteCond ${pair} ^([^,]*),${mark}\\1=(.+)$`, `${i}RewriteRule ^ - [E=${o.target}:%2]`);
  }
  return lines;
}

// user= and group= of a daemon group. mod_wsgi's default for a missing group= is Apache's Group (www-data,
// which reads plexer.conf), so group= is always written.
function daemonAccount(v: Validated, g: ApacheGroup): string {
  if (!g.runAs) return `user=${v.runUser} group=${v.runGroup}`;
  const [user, group = user] = g.runAs.split(':');
  return `user=${user} group=${group}`;
}

const lockDir = (v: Validated) => `${v.stateDir}/locks`;

// `requirement`, and no lockout in force for this user, address or pair (files kept by `plexer lockout`).
function requireUnlocked(v: Validated, requirement: string): string[] {
  return [
    '# Refused while a lockout holds for this user, address or pair (files kept by `plexer lockout`): a stat each.',
    '<RequireAll>',
    `    Require ${requirement}`,
    `    Require expr "${lockFileChecks(lockDir(v))}"`,
    '</RequireAll>',
  ];
}

function alternation(names: string[]): string {
  // Group names are [a-z0-9_-] only (GROUP_NAME_PATTERN), so they need no regex escaping.
  return `^(${names.join('|')})$`;
}

// Every module a rendering needs beyond those compiled into Debian's apache2 (mod_log_config, mod_unixd,
// mod_so), MPM first: the standalone layout loads them, the Debian layout needs them enabled (a2enmod).
export function apacheModules(o: Pick<ApacheConfigOptions, 'auth' | 'routing' | 'tls' | 'trustedProxies'>): string[] {
  const routing = o.routing ?? 'wsgi';
  return [
    // Prefork, not event or worker: see the comment on PREFORK_DIRECTIVES' use below.
    'mpm_prefork',
    'authz_core', 'authz_user', 'authn_core', 'auth_basic',
    // The socache provider for authentication results and its shared-memory backend.
    'socache_shmcb', 'authn_socache', 'authnz_external',
    // env: SetEnv PLEXER_DATA_ROOT for the WSGI application.
    'rewrite', 'alias', 'mime', 'env', 'dir',
    ...(routing === 'proxy' ? [] : ['wsgi']),
    // Form login: mod_auth_form keeps user + password in a session (mod_session), stored in a cookie
    // (mod_session_cookie), encrypted and MACed (mod_session_crypto); mod_request keeps the POST body for it.
    // Server-side sessions (mod_session_dbd over mod_dbd, PostgreSQL driver from libaprutil1-dbd-pgsql);
    // mod_headers forbids framing our pages.
    ...(o.auth === 'form' ? ['request', 'session', 'session_cookie', 'session_dbd', 'dbd', 'session_crypto', 'auth_form', 'headers'] : []),
    // Per-user backends: mod_proxy with HTTP and FastCGI (TCP or unix sockets); mod_headers passes the user.
    ...(routing === 'proxy' ? ['proxy', 'proxy_http', 'proxy_fcgi', ...(o.auth === 'form' ? [] : ['headers'])] : []),
    ...(o.tls ? ['ssl'] : []),
    // The client's own address from a trusted proxy's X-Forwarded-For.
    ...((o.trustedProxies ?? []).length > 0 ? ['remoteip'] : []),
  ];
}

// group= shows where each request was routed ("-" before routing, e.g. 401; _unrouted_ when no answer routed it).
function logFormat(v: Validated): string {
  return v.routing === 'proxy'
    ? `LogFormat "%h %u %t %>s %D \\"%r\\" backend=%{PLEXER_BACKEND}e" plexer`
    : `LogFormat "%h %u %t %>s %D \\"%r\\" group=%{PROCESS_GROUP}e" plexer`;
}

// What the standalone layout sets that Debian's apache2.conf would otherwise: the server's own paths, logs,
// modules, user, port and MPM.
function standaloneGlobals(v: Validated, add: Add): void {
  add(
    '# Generated by plexer (src/apache/render.ts). Do not edit: re-render and run `apache2 -f THIS -k graceful`.',
    '# Standalone: it includes nothing from /etc/apache2 and needs none of Debian\'s envvars.',
    '',
    '# Anchor relative paths in our own directory instead of /etc/apache2.',
    `ServerRoot "${v.stateDir}"`,
    '# Debian\'s binary has no compiled-in runtime dir; without these it fails with',
    '# "AH00111: Config variable ${APACHE_RUN_DIR} is not defined" or writes into /var/run/apache2.',
    `DefaultRuntimeDir "${v.stateDir}"`,
    `PidFile "${v.stateDir}/httpd.pid"`,
    '# All mutexes (rewrite-map, ssl-cache, authn-socache, mpm-accept…) as lock files in our directory.',
    `Mutex file:${v.stateDir} default`,
    `ErrorLog "${v.stateDir}/error.log"`,
    `LogLevel ${v.logLevel}`,
    logFormat(v),
    `CustomLog "${v.stateDir}/access.log" plexer`,
    '',
    '# Modules: absolute paths, only what is used (apacheModules).',
    ...apacheModules(v).map((name) => `LoadModule ${name}_module ${v.modulesDir}/mod_${name}.so`),
    '',
    '# Workers and WSGI daemons drop to this user; everything they read (WSGI script, Django project, error',
    '# pages, plexer itself for the helpers) must be readable by it — nothing under /root.',
    `User ${v.runUser}`,
    `Group ${v.runGroup}`,
    `Listen ${v.listen}`,
    `ServerName ${v.serverName}`,
    'ServerTokens Prod',
    'ServerSignature Off',
    'TraceEnable Off',
    '',
    '# Prefork, not event or worker: mod_authnz_external 3.3.2 registers its authenticator with a pointer to a',
    '# stack variable (apr_pool_note_subprocess(p, &proc, …)); at the end of a request APR reads that dead slot,',
    '# finds pid 0 and, when another thread of the same child has an authenticator running, sends',
    '# kill(0, SIGTERM) to the whole process group: authenticators die ("died on signal 15", good logins',
    '# refused), and so do the prg: maps and WSGI daemons in that group (every user then gets the 503 page);',
    '# SIGKILL of the child follows 3 s later. A single-threaded child never has another authenticator alive',
    '# at that moment: measured 0 kills in 5,600 requests with prefork, 1-3 per fresh start with event/worker.',
    '# The real work runs in the WSGI daemons; these processes only authenticate, rewrite and proxy.',
    ...PREFORK_DIRECTIVES,
    '',
    '# No mime.types lookup needed beyond our HTML error pages; /dev/null avoids a ServerRoot-relative default.',
    'TypesConfig /dev/null',
    'AddType text/html .html',
    'AddDefaultCharset utf-8',
    'DirectoryIndex disabled',
    '',
    '# Deny the whole file system; only the error pages and the WSGI script are opened below.',
    '<Directory />',
    '    Options None',
    '    AllowOverride None',
    '    Require all denied',
    '</Directory>',
  );
}

export function renderApacheConfig(o: ApacheConfigOptions): string {
  const v = validate(o);
  const enabled = v.groups.filter((g) => g.enabled);
  const disabled = v.groups.filter((g) => !g.enabled);
  const mapped = enabled.filter((g) => g.settingsModule === null);
  const wsgi = v.routing !== 'proxy';
  const helper = (args: string) => `${v.command} ${args} --config ${v.configFile}`;
  const routeMap = wsgi && !v.mapDir && mapped.length > 0 && o.twoMaps !== true;
  const mapSource = (kind: 'group' | 'settings' | 'backend' | 'route') =>
    v.mapDir ? `"dbm=gdbm:${v.mapDir}/${kind}.map"` : `"prg:${helper(`map ${kind}`)}" ${v.mapUser}`;
  const L: string[] = [];
  const add = (...lines: string[]) => L.push(...lines);

  if (v.layout === 'standalone') {
    standaloneGlobals(v, add);
  } else {
    add(
      '# Generated by plexer (src/apache/render.ts) for Debian\'s Apache layout: a site for sites-available. Do not',
      '# edit: re-render and run `apache2ctl graceful`. Everything global (ServerRoot, PidFile, Mutex, User, the main',
      '# ErrorLog, modules, the MPM) is apache2.conf\'s: `plexer apache modules` lists what a2enmod must enable.',
    );
    if (v.ownListen) add(`Listen ${v.listen}`);
  }
  const prgMaps = v.mapDir ? 0 : wsgi && !routeMap ? 1 + (mapped.length > 0 ? 1 : 0) : 1;
  if (prgMaps > 0) {
    add(
      '',
      '# mod_rewrite never restarts a prg: map that dies or hangs. Apache does restart a piped logger that dies, so',
      '# the watchdog runs as one: it reloads Apache gracefully (fresh maps) when a map is gone, kills a map that',
      '# keeps a worker waiting, and hears of every request that found a map\'s pipe behind (PLEXER_DESYNC, set by',
      '# the routing rules below): only those requests are written to it.',
      `CustomLog "|${v.command} watchdog --maps ${prgMaps} --state-file ${v.stateDir}/watchdog.state" "desync %u" env=PLEXER_DESYNC`,
    );
  }
  // mod_authn_socache refuses a wrong password for a cached user itself: plexer never sees that guess. Every
  // 401 that carried a user name goes to `plexer lockout` (%<u: the ErrorDocument's internal redirect has no
  // user, the original request has), which counts it as authn would and keeps one file
  // per lockout in force; the Require below refuses a request whose user, address or pair has one, even when
  // the cache accepts its password. Apache restarts it if it dies. (A vhost with its own CustomLog, as in the
  // Debian layout, inherits no server-level log: there it goes inside the vhost.)
  const lockoutLog = `CustomLog "|${helper(`lockout --lock-dir ${lockDir(v)}`)}" "%<u %a" "expr=%{REQUEST_STATUS} == 401"`;
  if (v.layout === 'standalone') add('', '# Failed logins, wherever Apache refused them: counted, lockouts kept as files (plexer lockout --help).', lockoutLog);
  if (v.layout === 'standalone') add(...loginAuditLog(v, `${v.stateDir}/login.log`));
  if (wsgi) {
  add(
    '',
    '# ---- mod_wsgi: one daemon process group per tenant -------------------------------------------------',
    `# Sockets next to the pid file (default would be ServerRoot-relative). Paths must fit in 108 bytes.`,
    `WSGISocketPrefix ${v.stateDir}/wsgi`,
    '# Never run Python inside Apache\'s own workers: an empty PROCESS_GROUP would otherwise mean "embedded".',
    'WSGIRestrictEmbedded On',
    '# Python is initialised in the children/daemons only, never in the root parent (the default, stated).',
    'WSGILazyInitialization On',
  );
  if (enabled.length === 0) add('# (no enabled groups: no daemon is defined and every application request gets our 503 page)');
  for (const g of enabled) {
    add(
      `# Group ${g.name}: settings ${g.settingsModule ?? '(from the settings map)'}. processes=1 keeps one Django per tenant;`,
      '# display-name shows "(wsgi:NAME)" in ps; home= is the cwd; request-timeout bounds a stuck request;',
      '# startup-timeout restarts a daemon whose application does not load.',
      ...(g.runAs ? ['# Runs as its own account: other tenants\' data and plexer\'s files (root:www-data) are out of its reach.'] : []),
      `WSGIDaemonProcess ${g.name} display-name=%{GROUP} processes=1 threads=${v.wsgiThreads} ${daemonAccount(v, g)} home=${v.pythonPath} python-path=${v.pythonPath} lang=C.UTF-8 locale=C.UTF-8 request-timeout=60 startup-timeout=30 graceful-timeout=15`,
    );
  }
  if (disabled.length > 0) add(`# Disabled (no daemon; users get 503): ${disabled.map((g) => g.name).join(' ')}`);
  }

  add('', `<VirtualHost ${v.listen}>`, `    ServerName ${v.serverName}`);
  if (v.layout === 'debian') {
    add(
      '    # The site\'s own logs, where /etc/logrotate.d/apache2 rotates them (${APACHE_LOG_DIR}/*.log). The maps, the',
      '    # watchdog and the WSGI daemons write to Apache\'s main error log, next to them.',
      '    ErrorLog ${APACHE_LOG_DIR}/plexer_error.log',
      `    LogLevel ${v.logLevel}`,
      `    ${logFormat(v)}`,
      '    CustomLog ${APACHE_LOG_DIR}/plexer_access.log plexer',
      '    ServerSignature Off',
      '    TraceEnable Off',
      '    AddType text/html .html',
      '    AddDefaultCharset utf-8',
      '    DirectoryIndex disabled',
    );
  }
  if (v.tls) {
    add(
      '    SSLEngine on',
      `    SSLCertificateFile "${v.cert}"`,
      `    SSLCertificateKeyFile "${v.key}"`,
      '    SSLProtocol -all +TLSv1.2 +TLSv1.3',
    );
  }
  add(
    '',
    '    # RewriteEngine On is REQUIRED at this level: with it only inside <Directory> the prg: programs are',
    '    # never started and every lookup silently returns the |default.',
    '    RewriteEngine On',
    '    # One program per map for the whole server, shared by all children under the global rewrite-map mutex.',
    '    # Started with an EMPTY environment, so absolute paths and --config; split on whitespace, no quoting.',
    '    # The third argument drops it to an unprivileged user (Apache >= 2.4.29).',
  );
  if (wsgi) {
    if (v.mapDir) add('    # dbm: maps kept current by `plexer sync`: stat()ed per lookup, reopened when the file is replaced.');
    if (routeMap) {
      add(
        '    # user -> "GROUP SETTINGS": the group and its settings module in one lookup (the two-map form: twoMaps).',
        `    RewriteMap plexer_route ${mapSource('route')}`,
      );
    } else if (mapped.length > 0) {
      add(`    RewriteMap plexer_group ${mapSource('group')}`, `    RewriteMap plexer_settings ${mapSource('settings')}`);
    } else {
      add(
        `    RewriteMap plexer_group ${mapSource('group')}`,
        '    # No group takes its settings from the map, so `plexer map settings` is not started.',
      );
    }
  } else {
    add(
      '    # user -> the backend of their daemon group (a mod_proxy URL); NULL for no user, no group, no backend.',
      `    RewriteMap plexer_backend ${mapSource('backend')}`,
    );
  }
  add(
    '',
    v.auth === 'form'
      ? '    # ---- Authentication: a login form (mod_auth_form) checked by mod_authnz_external, cached in shared memory'
      : '    # ---- Authentication: Basic via mod_authnz_external, results cached in shared memory --------------',
    '    # pipe: the helper reads "user\\npassword\\n" on stdin; exit 0 accepts. One fork+exec per uncached check',
    '    # and Apache waits with no timeout, so the helper bounds its own run time.',
    '    # --counted-by-log: its refusals are 401s (Basic, and the login handler\'s), which `plexer lockout` counts',
    '    # along with the cache\'s own.',
    `    DefineExternalAuth plexer pipe "${helper('authn --counted-by-log')}"`,
    '    # Roles: "user\\nrole1 role2\\n" on stdin, exit 0 if the user has any of them.',
    `    DefineExternalGroup plexer_roles pipe "${helper('authz')}"`,
  );
  if (v.trustedProxies.length > 0) {
    add(
      '    # The client address (lockouts, logs, REMOTE_ADDR/IP for the helpers) comes from X-Forwarded-For only when',
      '    # the connection is from one of these proxies; from anyone else the header is ignored. InternalProxy, not',
      '    # TrustedProxy: the latter refuses private (intranet) client addresses in the header.',
      '    RemoteIPHeader X-Forwarded-For',
      ...v.trustedProxies.map((cidr) => `    RemoteIPInternalProxy ${cidr}`),
    );
  }
  if (v.layout === 'debian') add(`    ${lockoutLog}`, ...loginAuditLog(v, '${APACHE_LOG_DIR}/plexer_login.log').map((line) => `    ${line}`));
  if (v.auth === 'form') {
    add('', ...sessionStoreLines(v));
    add(
      v.sessionPassphraseFile !== undefined
        ? `    # Read by the root parent at start; keep it root-only (the run user, and so every tenant, can read this config).`
        : '    # Inline passphrase (tests): anyone who can read this file can decrypt sessions. Prefer a passphrase file.',
      v.sessionPassphraseFile !== undefined
        ? `    SessionCryptoPassphraseFile "${v.sessionPassphraseFile}"`
        : `    SessionCryptoPassphrase ${v.sessionPassphrase}`,
      `    SessionMaxAge ${v.sessionMaxAge}`,
    );
  }
  add(
    '',
    `    # Error pages of our own (static, no auth, outside the WSGI directory so no routing rules apply).`,
    `    Alias /_plexer/errors/ ${v.errorPagesDir}/`,
    '    # DocumentRoot is the (public, harmless) error page directory because mod_wsgi, like CGI, computes',
    '    # PATH_TRANSLATED with a sub-request for PATH_INFO ("/whoami") mapped under DocumentRoot: a denied',
    '    # DocumentRoot logs "AH01630: client denied by server configuration" on every application request.',
    `    DocumentRoot ${v.errorPagesDir}`,
    `    <Directory ${v.errorPagesDir}>`,
    '        Options None',
    '        Require all granted',
    '    </Directory>',
    '    ErrorDocument 401 /_plexer/errors/401.html',
    '    ErrorDocument 403 /_plexer/errors/403.html',
    '    ErrorDocument 500 /_plexer/errors/500.html',
    '    ErrorDocument 503 /_plexer/errors/503.html',
    '',
  );
  // Authentication lines for the section that serves the application.
  const authLines = (indent: string): string[] => {
    const lines =
      v.auth === 'basic'
        ? [
            'AuthType Basic',
            `AuthName "${v.authRealm}"`,
            '# socache first: a cached success skips the fork of the external helper.',
            'AuthBasicProvider socache external',
          ]
        : [
            'AuthType form',
            `AuthName "${v.authRealm}"`,
            '# socache first: a cached success skips the fork of the external helper. mod_authnz_external does not',
            '# merge per-directory settings, so every section that authenticates repeats AuthExternal.',
            'AuthFormProvider socache external',
          ];
    lines.push(
      'AuthExternal plexer',
      'AuthExternalProvideCache On',
      'AuthnCacheProvideFor external',
    );
    if (v.auth === 'form') {
      lines.push('# One cache for the login handler and the application (the default context is the section\'s path).', 'AuthnCacheContext plexer-form');
    }
    lines.push(
      '# Only successes are cached (unsalted SHA1 of the password, in shared memory). A changed or revoked',
      `# password keeps working for up to this many seconds.`,
      `AuthnCacheTimeout ${v.authCacheTimeout}`,
    );
    if (v.auth === 'form') {
      lines.push(
        '# The session cookie carries user + password; re-checked by the providers above on every request.',
        'Session On',
        '# No (valid) session: redirect to the login page instead of a 401.',
        `AuthFormLoginRequiredLocation ${LOGIN_PAGE_PATH}`,
      );
    }
    lines.push(...requireUnlocked(v, 'valid-user'));
    return lines.map((line) => indent + line);
  };
  if (v.auth === 'form') {
    const clientScheme = v.httpsToClient ? 'https' : 'http';
    add(
      '    # ---- Form login pieces: the static page, the handler it posts to, and logout ------------------------',
      `    Alias /_plexer/login/ ${v.loginPagesDir}/`,
      `    <Directory ${v.loginPagesDir}>`,
      '        Options None',
      '        Require all granted',
      '    </Directory>',
      '    # Our pages refuse to be framed (clickjacking the login form).',
      '    <LocationMatch "^/_plexer/">',
      '        Header always set X-Frame-Options DENY',
      '        Header always set Content-Security-Policy "frame-ancestors \'none\'"',
      '    </LocationMatch>',
      '    # Login CSRF: a post to the handler from another site (a form that would log the victim in as the',
      '    # attacker) is refused with our 403. Browsers say where a request comes from in Sec-Fetch-Site and, on',
      '    # POST, Origin; neither can be set by a page. A client sending neither (curl, old browsers) is let through:',
      '    # it is no victim\'s browser. Checked before any other phase, so the handler never sees the post.',
      `    RewriteCond %{REQUEST_URI} ^${LOGIN_HANDLER_PATH}(/|$)`,
      `    RewriteCond expr "%{HTTP:Sec-Fetch-Site} in {'cross-site', 'same-site'} || (-n %{HTTP:Origin} && %{HTTP:Origin} != '${clientScheme}://%{HTTP_HOST}')"`,
      '    RewriteRule ^ - [F]',
      '    # login.html posts httpd_username + httpd_password here. Success: a fresh session and a redirect to a',
      '    # FIXED location. Failure: back to the login page. No Require: the handler itself authenticates the posted',
      '    # credentials.',
      `    <Location ${LOGIN_HANDLER_PATH}>`,
      '        SetHandler form-login-handler',
      '        AuthType form',
      `        AuthName "${v.authRealm}"`,
      '        AuthFormProvider socache external',
      '        AuthExternal plexer',
      '        AuthExternalProvideCache On',
      '        AuthnCacheProvideFor external',
      '        AuthnCacheContext plexer-form',
      `        AuthnCacheTimeout ${v.authCacheTimeout}`,
      '        Session On',
      '        # mod_auth_form redirects a success to the form\'s httpd_location field when one is posted, even to another',
      '        # site (an open redirect), and no directive turns that off; mod_headers cannot reach the Location of a',
      '        # redirect Apache answers as an error. So every 302 of the handler becomes a redirect to OUR fixed,',
      '        # absolute URL (an ErrorDocument URL replaces the Location), and a failure is no redirect at all: a 401',
      '        # (no AuthFormLoginRequiredLocation here) answered with the login page, which then says it failed.',
      `        AuthFormLoginSuccessLocation ${v.loginSuccessPath}`,
      `        ErrorDocument 302 ${clientScheme}://%{HTTP_HOST}${v.loginSuccessPath}`,
      `        ErrorDocument 401 ${LOGIN_PAGE_PATH}`,
      '    </Location>',
      '    # Logout empties the session and sends it back expiring at once. AuthName is REQUIRED here: mod_auth_form',
      '    # keys the session entries by it ("plexer-user", "plexer-pw"); without it the handler clears other keys,',
      '    # answers 307 as if it worked and the returned cookie still logs the user in.',
      `    <Location ${LOGOUT_PATH}>`,
      '        SetHandler form-logout-handler',
      '        AuthType form',
      `        AuthName "${v.authRealm}"`,
      '        Session On',
      '        SessionMaxAge 1',
      `        AuthFormLogoutLocation ${LOGIN_PAGE_PATH}?logged-out=1`,
      '    </Location>',
      '',
    );
  }

  if (v.routing === 'proxy') {
    renderProxy(v, add, authLines);
  } else {
    renderWsgi(v, add, authLines, { enabled, disabled, mapped, routeMap });
  }
  add('</VirtualHost>', '');
  return L.join('\n');
}

type Validated = ReturnType<typeof validate>;

// One line per login event for people and fail2ban (README: "Login audit"): the time with its zone, the
// outcome, then the client address before the user name, so no user name (quoted and escaped by Apache) can
// put another address where a filter looks. A failure is any 401 that carried a user name, wherever it was
// refused (the cache, the authenticator, a lockout); a success is a login through the form (Basic has no
// login event: every request carries the password).
function loginAuditLog(v: Validated, file: string): string[] {
  const stamp = '%{%Y-%m-%dT%H:%M:%S%z}t';
  return [
    '# Login audit: successes (form) and failures, one line each.',
    `CustomLog "${file}" "${stamp} plexer-login failed ip=%a user=\\"%<u\\"" "expr=%{REQUEST_STATUS} == 401 && -n %{REMOTE_USER}"`,
    ...(v.auth === 'form'
      ? [`CustomLog "${file}" "${stamp} plexer-login ok ip=%a user=\\"%u\\"" "expr=%{REQUEST_URI} == '${LOGIN_HANDLER_PATH}' && %{REQUEST_STATUS} == 302"`]
      : []),
  ];
}

// The session (user + password, as mod_auth_form stores them) is encrypted and MACed with the passphrase
// (aes256, mod_session_crypto) wherever it is kept: a tampered, forged or foreign-key session does not decrypt
// and counts as none (-> login page). A valid one is still only a claim: mod_auth_form re-checks its user +
// password with the providers on every request, and only the REMOTE_USER that check yields chooses the instance.
function sessionStoreLines(v: Validated): string[] {
  // Secure whenever the browser talks https to us, directly or through a declared TLS proxy.
  const attributes = `path=/;HttpOnly;SameSite=Lax${v.httpsToClient ? ';Secure' : ''}`;
  const d = v.sessionDatabase;
  if (d === undefined) {
    return [
      '    # Cookie store: the cookie is the whole session. A copied cookie stays valid until it expires',
      `    # (SessionMaxAge, refreshed on each request) or the password changes; logout replaces the browser's copy only.`,
      `    SessionCookieName ${SESSION_COOKIE_NAME} ${attributes}`,
    ];
  }
  const fn = (name: string) => `${d.schema}.${name}`;
  return [
    '    # Database store (mod_session_dbd): the cookie holds a random key, the session row lives in PostgreSQL',
    '    # (only a SHA-256 of the key is stored). Logout deletes the row, which ends every copy of the cookie.',
    '    # mod_dbd keeps one connection per child process, as the helpers\' role, which may call the session',
    '    # functions of migration 006 and nothing else that writes. The connection string is in this file,',
    '    # which the run user can read: prefer pg_passfile to pg_password.',
    '    DBDriver pgsql',
    `    DBDParams "${d.conninfo}"`,
    `    DBDPrepareSQL "SELECT ${fn('session_load')}(%s, %lld)" plexer_session_select`,
    `    DBDPrepareSQL "SELECT * FROM ${fn('session_update')}(%s, %lld, %s, %s)" plexer_session_update`,
    `    DBDPrepareSQL "SELECT * FROM ${fn('session_insert')}(%s, %lld, %s)" plexer_session_insert`,
    `    DBDPrepareSQL "SELECT * FROM ${fn('session_delete')}(%s)" plexer_session_delete`,
    `    SessionDBDCookieName ${SESSION_COOKIE_NAME} ${attributes}`,
    '    SessionDBDSelectLabel plexer_session_select',
    '    SessionDBDUpdateLabel plexer_session_update',
    '    SessionDBDInsertLabel plexer_session_insert',
    '    SessionDBDDeleteLabel plexer_session_delete',
  ];
}
type Add = (...lines: string[]) => void;

function renderProxy(v: Validated, add: Add, authLines: (indent: string) => string[]) {
  add(
    '    # ---- Routing: mod_proxy to the user\'s own backend (map backend) ----------------------------------',
    '    # Rewrite rules inside <Location> are unsupported and vhost rules run before authentication, so the',
    `    # mount is aliased to an empty directory whose per-directory rules run after it (REMOTE_USER is set).`,
    `    Alias ${v.mountPath} ${v.proxyMountDir}`,
    '    # Backends see the Host the client asked for (their redirects and absolute URLs stay on this server).',
    '    ProxyPreserveHost On',
    `    ProxyTimeout ${v.proxyTimeout}`,
    `    <Directory ${v.proxyMountDir}>`,
    '        # mod_rewrite refuses per-directory rules (403, AH00670) unless FollowSymLinks or',
    '        # SymLinksIfOwnerMatch is on here.',
    '        Options SymLinksIfOwnerMatch',
    ...authLines('        '),
    '',
    '        RewriteEngine On',
    ...userNameGuard(),
    '        # 1. The backend of the user\'s group, from the map only, and only from an answer that names this user.',
    `        RewriteRule ^ - [E=PLEXER_BACKEND:${UNROUTED_SENTINEL}]`,
    ...keyedRouting({
      map: 'plexer_backend',
      key: '%{REMOTE_USER}',
      answerVar: 'PLEXER_BACKEND_ANSWER',
      target: 'PLEXER_BACKEND',
      prg: v.mapDir === undefined,
      noValue: [
        '        # 2. No backend for this user (no group, disabled user or group, group without a backend): our 403.',
        '        RewriteRule ^ - [F]',
      ],
    }),
    '        # 3. Only the URL shapes we proxy to (anything else, or "" from a dead map: our 503). The store\'s',
    '        #    CHECK constraint already limits the column; this keeps a bad value from reaching mod_proxy.',
    `        RewriteCond %{ENV:PLEXER_BACKEND} !${PROXY_BACKEND_REGEX}`,
    '        RewriteRule ^ - [R=503]',
    '        # 4. Proxy: backend (trailing slash dropped) + "/" + the path below the mount; the query string is',
    '        #    appended by mod_rewrite. The authority comes from the map answer alone, so the request path',
    '        #    cannot change the backend. A backend that does not answer: mod_proxy\'s 503 -> our 503 page.',
    '        RewriteCond %{ENV:PLEXER_BACKEND} ^(.*?)/?$',
    '        RewriteRule ^(.*)$ %1/$1 [P,L]',
    '',
    '        # What the backend learns about the user comes from authentication only: the client\'s copies of the',
    `        # header (also with "_" for "-", which some frameworks fold together) are dropped, ours is set.`,
    `        RequestHeader unset ${USER_HEADER.replace(/-/g, '_')}`,
    `        RequestHeader unset ${USER_HEADER.replace(/-(?=[^-]*$)/, '_')}`,
    `        RequestHeader unset ${USER_HEADER.replace('-', '_')}`,
    `        RequestHeader set ${USER_HEADER} "expr=%{REMOTE_USER}"`,
    '        # Never forward the Basic credentials (the password) to a backend.',
    '        RequestHeader unset Authorization',
  );
  if (v.auth === 'form') {
    add(
      '        # Nor the session cookie (it holds the encrypted password): the backend sees the other cookies only.',
      `        RequestHeader edit* Cookie "(^|;\\s*)${SESSION_COOKIE_NAME}=[^;]*" ""`,
    );
  }
  add('    </Directory>');
}

function renderWsgi(
  v: Validated,
  add: Add,
  authLines: (indent: string) => string[],
  g: { enabled: ApacheGroup[]; disabled: ApacheGroup[]; mapped: ApacheGroup[]; routeMap: boolean },
) {
  const { enabled, disabled, mapped, routeMap } = g;
  add(`    WSGIScriptAlias ${v.mountPath} ${v.wsgiScript}`);
  if (v.routing === 'prefix') {
    add(
      `    # Prefix mode: ${v.mountPath}/x is rewritten internally to ${v.userPrefix}/USER${v.mountPath}/x (below), which is served`,
      '    # by the same script with SCRIPT_NAME ' + `${v.userPrefix}/USER${v.mountPath}: distinct, cacheable URLs per user.`,
      `    WSGIScriptAliasMatch ^${v.userPrefix}/[A-Za-z0-9._@+-]+${v.mountPath}(?=/|$) ${v.wsgiScript}`,
    );
  }
  add(
    `    <Directory ${v.wsgiDir}>`,
    '        # mod_rewrite refuses per-directory rules (403, AH00670) unless FollowSymLinks or',
    '        # SymLinksIfOwnerMatch is on here.',
    '        Options SymLinksIfOwnerMatch',
    ...authLines('        '),
    '',
    '        # Per-directory rules run in the fixup phase, AFTER authentication: REMOTE_USER is set here',
    '        # (at vhost level it is still empty; %{LA-U:REMOTE_USER} would authenticate twice).',
    '        RewriteEngine On',
    ...userNameGuard(),
  );
  if (v.routing === 'prefix') {
    const m = v.mountPath.replace(/\./g, '\\.');
    add(
      `        # P1. ${v.mountPath}/x: internal redirect to the AUTHENTICATED user's prefix (the query string is kept).`,
      `        RewriteCond %{REQUEST_URI} ^${m}(/.*)?$`,
      `        RewriteRule ^ ${v.userPrefix}/%{REMOTE_USER}${v.mountPath}%1 [L]`,
      `        # P2. ${v.userPrefix}/NAME/…, redirected or asked for directly: NAME must be the authenticated user, else our`,
      '        #     403. Checked on the final URL, so no encoding or dot-segment trick reaches another prefix.',
      `        RewriteCond "%{REMOTE_USER}:%{REQUEST_URI}" !^([^:/]+):${v.userPrefix}/\\1${m}(/|$)`,
      '        RewriteRule ^ - [F]',
    );
  }
  add(
    '        # 1. The user\'s group, from the map only, and only from an answer that names this user ("alice=alpha").',
    `        RewriteRule ^ - [E=PROCESS_GROUP:${UNROUTED_SENTINEL}]`,
    ...keyedRouting({
      map: routeMap ? 'plexer_route' : 'plexer_group',
      key: '%{REMOTE_USER}',
      answerVar: 'PLEXER_GROUP_ANSWER',
      target: 'PROCESS_GROUP',
      ...(routeMap ? { settingsTarget: 'PLEXER_SETTINGS' } : {}),
      prg: v.mapDir === undefined,
      noValue: ['        # 2. The map knows no group for this user ("alice="): our 403 page.', '        RewriteRule ^ - [F]'],
    }),
  );
  if (disabled.length > 0) {
    add(
      '        # 3. A disabled tenant: our 503 page.',
      `        RewriteCond %{ENV:PROCESS_GROUP} ${alternation(disabled.map((g) => g.name))}`,
      '        RewriteRule ^ - [R=503]',
    );
  }
  if (enabled.length > 0) {
    add(
      '        # 4. Anything but an enabled, configured group (empty answer from a dead map, a group added to the',
      '        #    database but not yet rendered here): our 503, never mod_wsgi\'s "No WSGI daemon process" 500.',
      `        RewriteCond %{ENV:PROCESS_GROUP} !${alternation(enabled.map((g) => g.name))}`,
      '        RewriteRule ^ - [R=503]',
    );
  } else {
    add('        # 4. No enabled group at all: every request gets our 503.', '        RewriteRule ^ - [R=503]');
  }
  const fixed = enabled.filter((g) => g.settingsModule !== null);
  if (fixed.length > 0) add('        # 5. Settings module, rendered in (no map lookup). The WSGI script pins it per process.');
  for (const g of fixed) {
    add(`        RewriteCond %{ENV:PROCESS_GROUP} =${g.name}`, `        RewriteRule ^ - [E=PLEXER_SETTINGS:${g.settingsModule}]`);
  }
  if (mapped.length > 0 && routeMap) {
    add(
      '        # 6. The groups rendered with settingsModule null take it from the route answer (step 1); none there: our 503.',
      `        RewriteCond %{ENV:PROCESS_GROUP} ${alternation(mapped.map((g) => g.name))}`,
      `        RewriteCond %{ENV:PLEXER_SETTINGS} !${MODULE_REGEX}`,
      '        RewriteRule ^ - [R=503]',
    );
  } else if (mapped.length > 0) {
    add(
      '        # 6. Settings module from the settings map for the groups rendered with settingsModule null, only from',
      '        #    an answer that names this group; anything else (no value, a dead map): our 503.',
      ...keyedRouting({
        map: 'plexer_settings',
        key: '%{ENV:PROCESS_GROUP}',
        answerVar: 'PLEXER_SETTINGS_ANSWER',
        target: 'PLEXER_SETTINGS',
        prg: v.mapDir === undefined,
        conds: [`        RewriteCond %{ENV:PROCESS_GROUP} ${alternation(mapped.map((g) => g.name))}`],
      }),
      `        RewriteCond %{ENV:PROCESS_GROUP} ${alternation(mapped.map((g) => g.name))}`,
      `        RewriteCond %{ENV:PLEXER_SETTINGS} !${MODULE_REGEX}`,
      '        RewriteRule ^ - [R=503]',
    );
  }
  add(
    '        # The root of the tenants\' data directories; the WSGI script appends the group that really serves the',
    '        # request (mod_wsgi.process_group), so a tenant\'s Django only ever opens DATA-ROOT/ITS-GROUP.',
    `        SetEnv PLEXER_DATA_ROOT ${v.dataDir}`,
    '',
    '        # Resolved in the handler phase, after the rules above. An unset variable would be used literally',
    '        # (500 "No WSGI daemon process called …"); an empty one would mean embedded (refused above).',
    '        WSGIProcessGroup %{ENV:PROCESS_GROUP}',
    '        # One interpreter per daemon process (Django is not multi-interpreter safe; C extensions prefer it).',
    '        WSGIApplicationGroup %{GLOBAL}',
    '        # Keep the Basic credentials (the password!) out of the application\'s environ (the default, stated).',
    '        WSGIPassAuthorization Off',
    '        # Only the pool\'s groups may be selected from here (explicit names, no wildcards).',
    enabled.length > 0
      ? `        WSGIRestrictProcess ${enabled.map((g) => g.name).join(' ')}`
      // With no group WSGIRestrictProcess still needs a name: one that no daemon can have (invalid group name).
      : `        WSGIRestrictProcess ${UNROUTED_SENTINEL}`,
    '        # The WSGI script gets nothing the client can forge: PROCESS_GROUP/PLEXER_SETTINGS come only from',
    '        # the rules above; headers arrive as HTTP_*, cookies and query strings never become variables.',
    '    </Directory>',
  );
  for (const r of v.roleLocations) {
    add(
      '',
      `    # ${r.path} also needs one of the roles ${r.roles.join(', ')}. Authentication and routing still come from`,
      '    # the <Directory> above (a Location merges after it and replaces only its Require).',
      '    # COST: GroupExternal forks the authz helper on EVERY request (mod_authnz_external has no group cache).',
      '    # Cheaper alternatives: `Require user alice bob` rendered from the database (no fork, needs a graceful',
      '    # on change); AuthGroupFile + `Require group ROLE` with a file plexer regenerates (mod_authz_groupfile,',
      '    # parsed per request, no fork); or `Require dbd-group ROLE` (mod_authz_dbd over a mod_dbd pgsql pool).',
      `    <Location ${r.path}>`,
      '        # mod_authnz_external does not merge its per-directory settings: a <Location> that sets only',
      '        # GroupExternal loses AuthExternal from the <Directory> ("No AuthExternal name has been set", 500).',
      '        AuthExternal plexer',
      '        AuthExternalProvideCache On',
      '        GroupExternal plexer_roles',
      ...requireUnlocked(v, `external-group ${r.roles.join(' ')}`).map((line) => `        ${line}`),
      '        # Without this an authenticated user lacking the role gets 401 (Basic re-prompt), not our 403.',
      '        AuthzSendForbiddenOnFailure On',
      '    </Location>',
    );
  }
}
