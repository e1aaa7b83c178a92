import { LOGGED_IN_VARIABLE } from './keyed-routing.js';
import type { MapPlan } from './maps.js';
import { LOGIN_HANDLER_PATH } from './options.js';
import { REASON_VARIABLE } from './refusals.js';
import { helperCommand, type Validated } from './validate.js';

// group= shows where each request was routed ("-" before routing, e.g. 401; _unrouted_ when no answer routed it).
// %<u: the user of the request as it came in; the error page Apache redirects a 403 or 503 to has none (%u was "-").
// A pool logs the account and the slot that served it. reason=: why an error page was shown (refusals.ts), "-"
// for an answer that is none.
export function logFormat(v: Validated): string {
  const reason = `reason=%{${REASON_VARIABLE}}e`;
  if (v.routing === 'proxy') return `LogFormat "%h %<u %t %>s %D \\"%r\\" backend=%{PLEXER_BACKEND}e ${reason}" plexer`;
  if (v.pool) return `LogFormat "%h %<u %t %>s %D \\"%r\\" group=%{PLEXER_ACCOUNT}e slot=%{PROCESS_GROUP}e ${reason}" plexer`;
  return `LogFormat "%h %<u %t %>s %D \\"%r\\" group=%{PROCESS_GROUP}e ${reason}" plexer`;
}

// dbm: maps have no process to watch; for prg: ones the watchdog is told how many to expect.
export function watchdogLog(v: Validated, plan: MapPlan): string[] {
  if (!plan.prg) return [];
  return [
    '',
    '# mod_rewrite never restarts a prg: map that dies or hangs. Apache does restart a piped logger that dies, so',
    '# the watchdog runs as one: it reloads Apache gracefully (fresh maps) when a map is gone, kills a map that',
    "# keeps a worker waiting, and hears of every request that found a map's pipe behind (PLEXER_DESYNC, set by",
    '# the routing rules below): only those requests are written to it.',
    `CustomLog "|${v.command} watchdog --maps ${plan.kinds.length} --state-file ${v.stateDir}/watchdog.state" "desync %u" env=PLEXER_DESYNC`,
  ];
}

// mod_authn_socache refuses a wrong password for a cached user itself: plexer never sees that guess. Every
// 401 that carried a user name goes to `plexer lockout` (%<u: the ErrorDocument's internal redirect has no
// user, the original request has), which counts it as authn would and keeps one file per lockout in force;
// requireUnlocked (auth.ts) refuses a request whose user, address or pair has one, even when
// the cache accepts its password. Apache restarts it if it dies. (A vhost with its own CustomLog, as in the
// Debian layout, inherits no server-level log: there it goes inside the vhost.)
// The login handler's refusals are not sent: its authenticator counted them before answering (form.ts).
function lockoutLog(v: Validated): string {
  const page = v.auth === 'form' ? '' : ` --refusal-page ${v.errorPagesDir}/401.html`;
  const counted = v.auth === 'form' ? `${refusedLogin(v)} && %{REQUEST_URI} != '${LOGIN_HANDLER_PATH}'` : refusedLogin(v);
  return `CustomLog "|${helperCommand(v, `lockout --lock-dir ${v.lockDir}${page}`)}" "%<u %a" "expr=${counted}"`;
}

// A refusal Apache answered: a 401, not one the application answered to a request that had logged in. Form mode
// adds mod_auth_form's own refusal of credentials posted to an application URL (whose field names tenant code can
// read in its copy of Apache's memory): a redirect to the login page, for a form post that named a user and never
// reached the application. Only form posts, which is where mod_auth_form reads credentials: a stale session's
// requests (mostly GETs: a page and its assets, after `user passwd`) are no guesses. Counted from the log, after
// the answer; the login handler's are counted before it (form.ts).
function refusedLogin(v: Validated): string {
  const unauthorized = `%{REQUEST_STATUS} == 401 && -z %{ENV:${LOGGED_IN_VARIABLE}}`;
  if (v.auth !== 'form') return unauthorized;
  const formPost = `%{REQUEST_METHOD} == 'POST' && %{HTTP:Content-Type} =~ m#^application/x-www-form-urlencoded#i`;
  return `(${unauthorized} || %{REQUEST_STATUS} == 302 && -n %{REMOTE_USER} && -z %{ENV:${LOGGED_IN_VARIABLE}} && ${formPost})`;
}

// The standalone layout's server-level logs of failed logins; Debian's go inside the vhost (vhostLoginLogs).
export function serverLoginLogs(v: Validated): string[] {
  if (v.layout !== 'standalone') return [];
  return [
    '',
    '# Failed logins, wherever Apache refused them: counted, lockouts kept as files (plexer lockout --help).',
    lockoutLog(v),
    ...loginAuditLog(v, `${v.stateDir}/login.log`),
  ];
}

export function vhostLoginLogs(v: Validated): string[] {
  if (v.layout !== 'debian') return [];
  return [`    ${lockoutLog(v)}`, ...loginAuditLog(v, '${APACHE_LOG_DIR}/plexer_login.log').map((line) => `    ${line}`)];
}

// Debian layout: the site's own error and access logs, in the vhost.
export function vhostLogs(v: Validated): string[] {
  if (v.layout !== 'debian') return [];
  return [
    "    # The site's own logs, where /etc/logrotate.d/apache2 rotates them (${APACHE_LOG_DIR}/*.log). The maps, the",
    "    # watchdog and the WSGI daemons write to Apache's main error log, next to them.",
    '    ErrorLog ${APACHE_LOG_DIR}/plexer_error.log',
    `    LogLevel ${v.logLevel}`,
    `    ${logFormat(v)}`,
    '    CustomLog ${APACHE_LOG_DIR}/plexer_access.log plexer',
    '    ServerSignature Off',
    '    TraceEnable Off',
    '    AddType text/html .html',
    '    AddDefaultCharset utf-8',
    '    DirectoryIndex disabled',
  ];
}

// One line per login event for people and fail2ban (apache/LOGINS.md: "Login audit and fail2ban"): the time
// with its zone, the outcome, then the client address before the user name, so no user name (quoted and escaped
// by Apache) can put another address where a filter looks. A failure is any 401 that carried a user name, wherever it was
// refused (the cache, the authenticator, a lockout); a success is a login through the form (Basic has no
// login event: every request carries the password).
function loginAuditLog(v: Validated, file: string): string[] {
  const stamp = '%{%Y-%m-%dT%H:%M:%S%z}t';
  return [
    '# Login audit: successes (form) and failures, one line each.',
    // (The login handler's 302 is a success: it has its own line below.)
    `CustomLog "${file}" "${stamp} plexer-login failed ip=%a user=\\"%<u\\"" "expr=${refusedLogin(v)} && -n %{REMOTE_USER} && !(%{REQUEST_URI} == '${LOGIN_HANDLER_PATH}' && %{REQUEST_STATUS} == 302)"`,
    ...(v.auth === 'form'
      ? [
          `CustomLog "${file}" "${stamp} plexer-login ok ip=%a user=\\"%u\\"" "expr=%{REQUEST_URI} == '${LOGIN_HANDLER_PATH}' && %{REQUEST_STATUS} == 302"`,
        ]
      : []),
  ];
}
