import { lockFilePath, REFUSAL_SOCKET } from '../../lockout/lock-files.js';
import { authDefinitions } from './auth.js';
import { slowClients } from './global.js';
import { loginPieces, sessions } from './form.js';
import { vhostLoginLogs, vhostLogs } from './logs.js';
import { mapDefinitions, type MapPlan } from './maps.js';
import { roleLocationSections } from './roles.js';
import { proxyRouting } from './routing-proxy.js';
import { wsgiRouting } from './routing-wsgi.js';
import { poolVhost, vhostBinderLog } from './pool.js';
import { reasonOfErrorPage, refuse } from './refusals.js';
import type { Validated } from './validate.js';

// The one virtual host: maps and authenticator at its level, then the pages of ours, then the routed mount.
export function virtualHost(v: Validated, plan: MapPlan): string[] {
  return [
    '',
    `<VirtualHost ${v.listen}>`,
    `    ServerName ${v.serverName}`,
    ...vhostLogs(v),
    ...(v.layout === 'debian' ? slowClients(v, '    ') : []),
    ...tls(v),
    '',
    '    # RewriteEngine On is REQUIRED at this level: with it only inside <Directory> the prg: programs are',
    '    # never started and every lookup silently returns the |default.',
    '    RewriteEngine On',
    '    # One program per map for the whole server, shared by all children under the global rewrite-map mutex.',
    '    # Started with an EMPTY environment, so absolute paths and --config; split on whitespace, no quoting.',
    '    # The third argument drops it to an unprivileged user (Apache >= 2.4.29).',
    ...mapDefinitions(v, plan),
    ...(v.pool ? poolVhost(v, v.pool) : []),
    ...authDefinitions(v),
    ...clientAddress(v),
    ...lockedAddressRefusal(v),
    ...vhostLoginLogs(v),
    ...vhostBinderLog(v),
    ...sessions(v),
    ...errorPages(v),
    ...loginPieces(v),
    ...(v.routing === 'proxy' ? proxyRouting(v, plan) : [...wsgiRouting(v, plan), ...roleLocationSections(v)]),
    '</VirtualHost>',
  ];
}

function tls(v: Validated): string[] {
  if (!v.tls) return [];
  return [
    '    SSLEngine on',
    `    SSLCertificateFile "${v.cert}"`,
    `    SSLCertificateKeyFile "${v.key}"`,
    '    SSLProtocol -all +TLSv1.2 +TLSv1.3',
  ];
}

function clientAddress(v: Validated): string[] {
  if (v.trustedProxies.length === 0) return [];
  return [
    '    # The client address (lockouts, logs, REMOTE_ADDR/IP for the helpers) comes from X-Forwarded-For only when',
    '    # the connection is from one of these proxies; from anyone else the header is ignored. InternalProxy, not',
    '    # TrustedProxy: the latter refuses private (intranet) client addresses in the header.',
    '    RemoteIPHeader X-Forwarded-For',
    ...v.trustedProxies.map((cidr) => `    RemoteIPInternalProxy ${cidr}`),
  ];
}

// Checked in the first phase of a request, before authentication: a guesser whose address is locked costs one
// stat, never a password check or a helper started, and learns nothing from right or wrong passwords. 429 is
// not a failed login (only 401s are counted), so refusals while locked count nothing more. After
// clientAddress: behind a trusted proxy REMOTE_ADDR is already the client's.
function lockedAddressRefusal(v: Validated): string[] {
  return [
    '',
    '    # An address locked out by failed logins (a file kept by `plexer lockout`) gets our 429 page before any',
    '    # password is checked: no helper starts, every name and password gets the same answer.',
    '    RewriteCond %{REQUEST_URI} !^/_plexer/errors/',
    `    RewriteCond ${lockFilePath(v.lockDir, 'ip')} -f`,
    refuse(429, 'address-locked', '    '),
  ];
}

// Basic: every 401 is answered with the page `plexer lockout` serves on a unix socket, which counts the refused
// guess, and makes its lock file, before the page goes back (src/lockout/refusal-page.ts).
function refusalPage(v: Validated): string[] {
  return refusalPageLines(v.lockDir);
}

// Vhost level; also the benchmark's copy of the generated default.
export function refusalPageLines(lockDir: string): string[] {
  return [
    '    # 401: the page comes from `plexer lockout`, which counts the refused guess (and makes its lock file) before',
    "    # it answers, so a guesser's next request cannot outrun the count. Only as an error document: asked for",
    '    # directly, our 403. retry=0: while the logger restarts (the log line then counts the guess) the next 401',
    "    # tries again instead of Apache's default 60 s pause; timeout=1: a stopped logger holds each 401 a second.",
    '    ErrorDocument 401 /_plexer/refused',
    '    <Location /_plexer/refused>',
    `        Require expr "%{ENV:REDIRECT_STATUS} == '401'"`,
    '        # mod_proxy drops every request header the client names in Connection ("Connection: Authorization"',
    "        # would hide the guess from the count): the client's Connection header goes first.",
    '        RequestHeader unset Connection',
    `        ProxyPass "unix:${lockDir}/${REFUSAL_SOCKET}|http://plexer-lockout/refused" retry=0 timeout=1`,
    '    </Location>',
  ];
}

function errorPages(v: Validated): string[] {
  return [
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
    ...(v.auth === 'form' ? ['    ErrorDocument 401 /_plexer/errors/401.html'] : refusalPage(v)),
    '    ErrorDocument 403 /_plexer/errors/403.html',
    '    ErrorDocument 429 /_plexer/errors/429.html',
    '    ErrorDocument 500 /_plexer/errors/500.html',
    '    ErrorDocument 503 /_plexer/errors/503.html',
    ...reasonOfErrorPage(),
    '    # Our 503 means "try again" (a lookup not answered in time, a store down, every slot busy): clients are told',
    '    # when, unless the answer says so already.',
    `    Header always set Retry-After 5 "expr=%{REQUEST_STATUS} == 503 && -z resp('Retry-After')"`,
    '',
  ];
}
