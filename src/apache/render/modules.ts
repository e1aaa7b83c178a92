import type { ApacheConfigOptions } from './options.js';

// Every module a rendering needs beyond those compiled into Debian's apache2 (mod_log_config, mod_unixd,
// mod_so), MPM first: the standalone layout loads them, the Debian layout needs them enabled (a2enmod).
export function apacheModules(
  o: Pick<
    ApacheConfigOptions,
    'auth' | 'routing' | 'tls' | 'trustedProxies' | 'connectionsPerAddress' | 'layout' | 'pool' | 'loginCacheSocket'
  >,
): string[] {
  const routing = o.routing ?? 'wsgi';
  return [
    // Prefork, not event or worker: see the comment on PREFORK_DIRECTIVES' use (global.ts).
    'mpm_prefork',
    'authz_core',
    'authz_user',
    'authn_core',
    'auth_basic',
    // The socache provider for authentication results and its shared-memory backend.
    'socache_shmcb',
    'authn_socache',
    // The login cache in memcached (loginCacheSocket).
    ...(o.loginCacheSocket ? ['socache_memcache'] : []),
    'authnz_external',
    // env: SetEnv PLEXER_DATA_ROOT for the WSGI application.
    'rewrite',
    'alias',
    'mime',
    'env',
    'dir',
    ...(routing === 'proxy' ? [] : ['wsgi']),
    // Form login: mod_auth_form keeps user + password in a session (mod_session), stored in a cookie
    // (mod_session_cookie), encrypted and MACed (mod_session_crypto); mod_request keeps the POST body for it.
    // Server-side sessions (mod_session_dbd over mod_dbd, PostgreSQL driver from libaprutil1-dbd-pgsql);
    // mod_headers forbids framing our pages.
    ...(o.auth === 'form' ? ['request', 'session', 'session_cookie', 'session_dbd', 'dbd', 'session_crypto', 'auth_form', 'headers'] : []),
    // Per-user backends: mod_proxy with HTTP and FastCGI (TCP or unix sockets); mod_headers passes the user.
    // Basic: mod_proxy_http also fetches the 401 page from `plexer lockout` (vhost.ts refusalPage).
    // Basic: mod_headers drops the client's Connection header on the way to that page.
    ...(routing === 'proxy' || o.auth !== 'form' ? ['proxy', 'proxy_http'] : []),
    ...(routing === 'proxy' ? ['proxy_fcgi'] : []),
    // A slot pool: the binder answers on a unix socket through mod_proxy_scgi (its internal redirects go on).
    ...(o.pool ? [...(o.auth === 'form' ? ['proxy'] : []), 'proxy_scgi'] : []),
    ...(o.auth !== 'form' ? ['headers'] : []),
    ...(o.tls ? ['ssl'] : []),
    // The client's own address from a trusted proxy's X-Forwarded-For.
    ...((o.trustedProxies ?? []).length > 0 ? ['remoteip'] : []),
    // Slow clients (global.ts slowClients): time limits on reading a request, and a cap on one address's connections.
    'reqtimeout',
    // Not for Debian's layout: Debian 12's mod_qos does not load without libpcre3 loaded before it (global.ts).
    ...(o.connectionsPerAddress === 0 || o.layout === 'debian' ? [] : ['qos']),
  ];
}
