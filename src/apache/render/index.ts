// Renders one httpd configuration in one of two layouts. 'standalone' (the default; the demo, the tests, the
// benchmark): complete for Debian's /usr/sbin/apache2 binary, no Include of /etc/apache2, no envvars, no
// ServerRoot-relative paths. 'debian': a site for /etc/apache2/sites-available that leaves everything global to
// Debian's apache2.conf (ServerRoot, PidFile, Mutex, User, the main ErrorLog, the modules and the MPM, which
// a2enmod enables: apacheModules() lists them) and logs to ${APACHE_LOG_DIR}, where logrotate looks; the
// slots, the maps and the virtual host are the same in both. The function is pure (no file system, no clock, no
// environment) so the same options always give the same text; callers write it to a file and run
// `/usr/sbin/apache2 -f FILE -k start|graceful|stop`. test/unit/golden/ pins the text of every mode.
//
// Routing idiom (verified against a real Apache 2.4.71 + mod_wsgi 4.9.4, see test/apache/prototype.test.ts):
//   vhost level:        RewriteMap plexer_group "prg:…" www-data:www-data  +  RewriteEngine On
//   <Directory> of the WSGI script (per-directory rules run AFTER authentication, so REMOTE_USER is set):
//                       RewriteRule ^ - [E=PLEXER_GROUP_ANSWER:${plexer_group:%{REMOTE_USER}}]
//                       … PROCESS_GROUP only from an answer that names this user ("#alice=alpha",
//                       keyed-routing.ts); our own 403/503 for no account, no answer, a disabled account …
//                       WSGIProcessGroup %{ENV:PROCESS_GROUP}
// Nothing the client sends reaches PROCESS_GROUP: request headers become HTTP_* variables, query strings and
// cookies never become environment variables, and the rule overwrites the variable unconditionally.
//
// One section per module: validate.ts (every option, before any text), global.ts (server level per layout),
// logs.ts (watchdog, lockout, login audit, Debian's vhost logs), wsgi-daemons.ts (a slot of its own per account,
// and how any slot's daemon is written), maps.ts (which maps exist), vhost.ts, auth.ts, form.ts (sessions, login
// pieces), routing-wsgi.ts (wsgi and prefix), routing-proxy.ts, pool.ts (slots bound on demand instead), login-cache.ts
// (memcached), roles.ts, keyed-routing.ts (the answer-names-its-key rules every map lookup uses), modules.ts.
// Accounts, slots and bindings: src/accounts/model.ts.
import { globalSection } from './global.js';
import { serverLoginLogs, watchdogLog } from './logs.js';
import { mapPlan } from './maps.js';
import type { ApacheConfigOptions } from './options.js';
import { validate } from './validate.js';
import { virtualHost } from './vhost.js';
import { wsgiDaemons } from './wsgi-daemons.js';
import { poolDaemons, serverBinderLog } from './pool.js';
import { loginCache } from './login-cache.js';

export function renderApacheConfig(o: ApacheConfigOptions): string {
  const v = validate(o);
  const plan = mapPlan(v);
  const daemons = v.pool ? poolDaemons(v, v.pool) : wsgiDaemons(v);
  return [
    ...globalSection(v),
    ...watchdogLog(v, plan),
    ...serverLoginLogs(v),
    ...serverBinderLog(v),
    ...loginCache(v),
    ...daemons,
    ...virtualHost(v, plan),
    '',
  ].join('\n');
}

export type { ApacheConfigOptions, AuthMode, PoolOptions, RoutingMode } from './options.js';
export { ApacheConfigError } from './validate.js';
export { apacheModules } from './modules.js';
export { PREFORK_DIRECTIVES } from './global.js';
export { alternation, DESYNC_RETRIES, keyedRouting, UNROUTED_SENTINEL } from './keyed-routing.js';
export { requireUnlocked } from './auth.js';
export { refusalPageLines } from './vhost.js';
export { PROXY_BACKEND_REGEX } from './routing-proxy.js';
