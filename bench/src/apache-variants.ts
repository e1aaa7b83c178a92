// The Apache benchmark's variants: the files every variant serves (a tiny WSGI app, a minimal Python map) and
// one Apache config per variant.
//
// The configs follow src/apache/render/ (prefork MPM, maps at vhost level with RewriteEngine On, the
// per-directory rule inside the WSGI script's <Directory> that sees REMOTE_USER) and take its section functions
// where a variant matches the product (PREFORK_DIRECTIVES, keyedRouting, alternation, requireUnlocked), but are
// assembled here: each variant needs a different RewriteMap or provider, which the product renderer does not offer.
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import {
  alternation,
  keyedRouting,
  PREFORK_DIRECTIVES,
  refusalPageLines,
  requireUnlocked,
  UNROUTED_SENTINEL,
} from '../../dist/apache/render/index.js';

export const ROOT = fileURLToPath(new URL('../../', import.meta.url)).replace(/\/$/, '');
export const PLEXER = join(ROOT, 'bin/plexer');
export const NODE = process.execPath;
const MODULES = '/usr/lib/apache2/modules';
export const PASSWORD = 'pw-bench';
export const GROUPS = ['t1', 't2', 't3', 't4'];
export const groupOf = (i: number) => GROUPS[i % GROUPS.length]!;

export const WSGI_APP = `# Tiny WSGI app for the Apache benchmark: names the daemon group that served the request.
def application(environ, start_response):
    group = environ.get('mod_wsgi.process_group', '')
    routed = environ.get('PROCESS_GROUP')
    if not group or (routed is not None and routed != group):
        body = b'misrouted\\n'
        start_response('500 Internal Server Error', [('Content-Type', 'text/plain'), ('Content-Length', str(len(body)))])
        return [body]
    body = ('%s %s\\n' % (group, environ.get('REMOTE_USER', '-'))).encode()
    start_response('200 OK', [('Content-Type', 'text/plain'), ('Content-Length', str(len(body))), ('X-Group', group)])
    return [body]
`;

// The "minimal Python prg:" map: a dict from the same file as the txt: map, one answer per line, flushed.
export const PY_MAP = `import sys
d = {}
with open(sys.argv[1]) as f:
    for line in f:
        k, _, v = line.rstrip('\\n').partition(' ')
        d[k] = v
keyed = len(sys.argv) > 2
out = sys.stdout
inp = sys.stdin
while True:
    line = inp.readline()
    if not line:
        break
    key = line.rstrip('\\n')
    if keyed:
        out.write('#' + key + '=' + d.get(key, '') + '\\n')
    else:
        out.write(d.get(key, 'NULL') + '\\n')
    out.flush()
`;

// The "minimal Node prg:" map, the ceiling for plexer map's own code: a Map from the same file as the txt: map,
// a blocking read/write loop (no event loop, no store, no cache bookkeeping), every answer naming its key as
// plexer's do. Apache hands prg: programs blocking pipes, so readSync waits and writeSync writes it all.
export const NODE_MAP = `'use strict';
const fs = require('fs');
const d = new Map();
for (const line of fs.readFileSync(process.argv[2], 'latin1').split('\\n')) {
  const i = line.indexOf(' ');
  if (i > 0) d.set(line.slice(0, i), line.slice(i + 1));
}
const buf = Buffer.alloc(65536);
let tail = '';
for (;;) {
  const n = fs.readSync(0, buf, 0, buf.length, null);
  if (n === 0) break;
  const lines = (tail + buf.toString('latin1', 0, n)).split('\\n');
  tail = lines.pop();
  let out = '';
  for (const k of lines) out += '#' + k + '=' + (d.get(k) ?? '') + '\\n';
  if (out) fs.writeSync(1, out, null, 'latin1');
}
`;

export interface Variant {
  id: string;
  label: string;
  // Lines at server level (before the vhost) and inside the vhost.
  server?: string[];
  vhost?: string[];
  // RewriteMap definition; undefined: fixed WSGIProcessGroup "pool".
  map?: string;
  // The map answers "key=value" and the rules are the product's key-checking ones (keyedRouting).
  keyed?: boolean;
  // The answer is a route, "GROUP SETTINGS": the rules split it as the default generated config does.
  route?: boolean;
  // Authentication lines inside <Directory>; undefined: Require all granted.
  auth?: string[];
  modules?: string[];
  // Answers every password with 200 (the minimal authorizer, a ceiling): the wrong-password checks are skipped.
  acceptsAnyPassword?: boolean;
}

export interface Env {
  dir: string;
  app: string; // directory with bench.wsgi, map.py, map.cjs
  conf: string; // plexer.conf
  dbdParams: string;
  txtMap: string;
  mapDir: string; // plexer sync's directory
  authDbm: string;
  bcryptFile: string;
  authdPort: number;
  fcgiMinPort: number; // the minimal FastCGI authorizer (bench/src/fcgi-min.ts)
  lockDir: string; // plexer lockout's, on tmpfs as the generated default's
  loginCacheSocket: string; // the memcached of --login-cache (started by passwords(), apache-run.ts)
  checkerSocket: string; // plexer checker's (--login-checker), started by Apache as a piped logger
}

const BASE_MODULES = ['mpm_prefork', 'authz_core', 'authz_user', 'authn_core', 'auth_basic', 'rewrite', 'env', 'wsgi'];

export function renderConfig(env: Env, v: Variant, port: number, stateDir: string): string {
  const modules = [...BASE_MODULES, ...(v.modules ?? [])];
  const groups = v.map === undefined ? ['pool'] : GROUPS;
  const L: string[] = [
    `# plexer Apache benchmark, variant ${v.id} (generated by bench/src/apache-variants.ts)`,
    `ServerRoot "${stateDir}"`,
    `DefaultRuntimeDir "${stateDir}"`,
    `PidFile "${stateDir}/httpd.pid"`,
    `Mutex file:${stateDir} default`,
    `ErrorLog "${stateDir}/error.log"`,
    'LogLevel warn',
    ...modules.map((m) => `LoadModule ${m}_module ${MODULES}/mod_${m}.so`),
    'User www-data',
    'Group www-data',
    `Listen 127.0.0.1:${port}`,
    'ServerName bench',
    'ServerTokens Prod',
    ...PREFORK_DIRECTIVES,
    '<Directory />',
    '    Options None',
    '    AllowOverride None',
    '    Require all denied',
    '</Directory>',
    `WSGISocketPrefix ${stateDir}/wsgi`,
    'WSGIRestrictEmbedded On',
    'WSGILazyInitialization On',
  ];
  // Same pool everywhere: 4 daemon processes x 4 threads (one group of 4 processes for the fixed reference).
  if (v.map === undefined) {
    L.push(
      `WSGIDaemonProcess pool display-name=%{GROUP} processes=4 threads=4 user=www-data group=www-data home=${env.app} lang=C.UTF-8 locale=C.UTF-8`,
    );
  } else {
    for (const g of GROUPS) {
      L.push(
        `WSGIDaemonProcess ${g} display-name=%{GROUP} processes=1 threads=4 user=www-data group=www-data home=${env.app} lang=C.UTF-8 locale=C.UTF-8`,
      );
    }
  }
  L.push(...(v.server ?? []));
  L.push(
    `<VirtualHost 127.0.0.1:${port}>`,
    '    ServerName bench',
    // As in the renderer: mod_wsgi maps PATH_INFO under DocumentRoot with a sub-request; a denied one logs
    // AH01630 on every request. NOT below the WSGI script's directory: its per-directory rules (and a map lookup
    // with an empty REMOTE_USER) would then run again in that sub-request.
    `    DocumentRoot ${env.dir}/docroot`,
    `    <Directory ${env.dir}/docroot>`,
    '        Require all granted',
    '    </Directory>',
    '    RewriteEngine On',
  );
  if (v.map !== undefined) L.push(`    RewriteMap grp "${v.map}"${v.map.startsWith('prg:') ? ' www-data:www-data' : ''}`);
  L.push(...(v.vhost ?? []).map((l) => `    ${l}`));
  L.push(`    WSGIScriptAlias /app ${env.app}/bench.wsgi`, `    <Directory ${env.app}>`, '        Options SymLinksIfOwnerMatch');
  L.push(...(v.auth ?? ['Require all granted']).map((l) => `        ${l}`));
  if (v.map !== undefined && v.keyed) {
    // The product's own rules: only an answer that names the user routes (src/apache/render/).
    L.push(
      '        RewriteEngine On',
      `        RewriteRule ^ - [E=PROCESS_GROUP:${UNROUTED_SENTINEL}]`,
      ...keyedRouting({
        map: 'grp',
        key: '%{REMOTE_USER}',
        answerVar: 'PLEXER_GROUP_ANSWER',
        target: 'PROCESS_GROUP',
        ...(v.route ? { restTarget: 'PLEXER_SETTINGS' } : {}),
        prg: v.map.startsWith('prg:'),
        noValue: ['        RewriteRule ^ - [F]'],
      }),
      `        RewriteCond %{ENV:PROCESS_GROUP} !${alternation(GROUPS)}`,
      '        RewriteRule ^ - [R=503]',
      ...(v.route
        ? [`        RewriteCond %{ENV:PLEXER_SETTINGS} !^bench\\.settings_(${GROUPS.join('|')})$`, '        RewriteRule ^ - [R=503]']
        : []),
      '        WSGIProcessGroup %{ENV:PROCESS_GROUP}',
    );
  } else if (v.map !== undefined) {
    L.push(
      '        RewriteEngine On',
      '        RewriteRule ^ - [E=PROCESS_GROUP:${grp:%{REMOTE_USER}|_none_}]',
      '        RewriteCond %{ENV:PROCESS_GROUP} =_none_',
      '        RewriteRule ^ - [F]',
      `        RewriteCond %{ENV:PROCESS_GROUP} !${alternation(GROUPS)}`,
      '        RewriteRule ^ - [R=503]',
      '        WSGIProcessGroup %{ENV:PROCESS_GROUP}',
    );
  } else {
    L.push('        WSGIProcessGroup pool');
  }
  L.push(
    '        WSGIApplicationGroup %{GLOBAL}',
    `        WSGIRestrictProcess ${groups.join(' ')}`,
    '    </Directory>',
    '</VirtualHost>',
    '',
  );
  return L.join('\n');
}

const SHA_AUTH = (env: Env) => [
  'AuthType Basic',
  'AuthName bench',
  'AuthBasicProvider dbm',
  'AuthDBMType gdbm',
  `AuthDBMUserFile ${env.authDbm}`,
  'Require valid-user',
];

function dbdServer(env: Env): string[] {
  return [
    'DBDriver pgsql',
    `DBDParams "${env.dbdParams}"`,
    // prefork: one persistent connection per child.
    'DBDPersist On',
  ];
}

// Same semantics as plexer's own query (src/store/map-queries.ts): enabled user in an enabled group.
const DBD_GROUP_QUERY =
  'SELECT g.name FROM plexer.users u JOIN plexer.daemon_groups g ON g.name = u.daemon_group WHERE u.name = %s AND NOT u.disabled AND g.enabled';

export function routingVariants(env: Env): Variant[] {
  const auth = SHA_AUTH(env);
  const authMods = ['authn_dbm'];
  return [
    { id: 'fixed', label: 'no map, fixed WSGIProcessGroup [reference]', auth, modules: authMods },
    { id: 'txt', label: '`txt:` map', map: `txt:${env.txtMap}`, auth, modules: authMods },
    {
      id: 'dbd',
      label: '`dbd:` map (mod_dbd, pgsql)',
      map: `dbd:${DBD_GROUP_QUERY}`,
      auth,
      modules: [...authMods, 'dbd'],
      server: dbdServer(env),
    },
    {
      id: 'fastdbd',
      label: '`fastdbd:` map (mod_dbd, pgsql)',
      map: `fastdbd:${DBD_GROUP_QUERY}`,
      auth,
      modules: [...authMods, 'dbd'],
      server: dbdServer(env),
    },
    {
      id: 'pyprg',
      label: 'minimal Python `prg:` (dict from a file)',
      map: `prg:/usr/bin/python3 ${env.app}/map.py ${env.txtMap}`,
      auth,
      modules: authMods,
    },
    {
      id: 'pyprg-keyed',
      label: "minimal Python `prg:`, answers name their key + the key check (plexer's rules)",
      map: `prg:/usr/bin/python3 ${env.app}/map.py ${env.txtMap} keyed`,
      keyed: true,
      auth,
      modules: authMods,
    },
    {
      id: 'nodeprg-keyed',
      label: "minimal Node `prg:` (blocking readSync/writeSync loop, a Map from the same file), answers name their key + plexer's rules",
      map: `prg:${NODE} ${env.app}/map.cjs ${env.txtMap}`,
      keyed: true,
      auth,
      modules: authMods,
    },
    {
      id: 'plexer',
      label: '`plexer map group` (`prg:`)',
      map: `prg:${NODE} ${PLEXER} map group --config ${env.conf}`,
      keyed: true,
      auth,
      modules: authMods,
    },
    {
      id: 'plexer-route',
      label: '`plexer map route` (`prg:`): group + settings in one lookup, the default generated config',
      map: `prg:${NODE} ${PLEXER} map route --config ${env.conf}`,
      keyed: true,
      route: true,
      auth,
      modules: authMods,
    },
    { id: 'dbm', label: '`dbm:` kept by `plexer sync`', map: `dbm=gdbm:${env.mapDir}/group.map`, keyed: true, auth, modules: authMods },
  ];
}

export function passwordVariants(env: Env): Variant[] {
  const basicLines = ['AuthType Basic', 'AuthName bench'];
  const ext = `DefineExternalAuth plexer pipe "${NODE} ${PLEXER} authn --config ${env.conf}"`;
  const shmcb = (name: string) => [`AuthnCacheSOCache shmcb:${env.dir}/${name}-authn.shmcb(67108864)`];
  // plexer authn behind socache, in the generated default's provider order; an hour's cache keeps warm users warm.
  const socacheExternal = [
    ...basicLines,
    'AuthBasicProvider socache external',
    'AuthExternal plexer',
    'AuthExternalProvideCache On',
    'AuthnCacheProvideFor external',
    'AuthnCacheTimeout 3600',
  ];
  // plexer lockout counting the 401s, as the generated default runs it (one lock directory per Apache: the 401
  // page's socket is in it).
  const lockoutLogger = (lockDir: string) =>
    `CustomLog "|${NODE} ${PLEXER} lockout --lock-dir ${lockDir} --refusal-page ${env.app}/401.html --config ${env.conf}" "%<u %a" "expr=%{REQUEST_STATUS} == 401"`;
  return [
    { id: 'none', label: 'no authentication [reference]' },
    {
      id: 'bcrypt-file',
      label: 'bcrypt htpasswd, cost 5 (mod_authn_file)',
      modules: ['authn_file'],
      auth: [...basicLines, 'AuthBasicProvider file', `AuthUserFile ${env.bcryptFile}`, 'Require valid-user'],
    },
    {
      id: 'dbd-socache',
      label: 'mod_authn_dbd (bcrypt cost 5) + socache',
      modules: ['dbd', 'authn_dbd', 'socache_shmcb', 'authn_socache'],
      server: [...dbdServer(env), ...shmcb('dbd')],
      auth: [
        ...basicLines,
        'AuthBasicProvider socache dbd',
        // APR 1.6 validates $2y$ but not $2b$ (bcryptjs' prefix): same algorithm, so the prefix is swapped.
        `AuthDBDUserPWQuery "SELECT '$2y$' || substr(password_hash, 5) FROM plexer.users WHERE name = %s AND NOT disabled"`,
        'AuthnCacheProvideFor dbd',
        'AuthnCacheTimeout 3600',
        'Require valid-user',
      ],
    },
    {
      id: 'ext',
      label: 'plexer authn (mod_authnz_external), no socache',
      modules: ['authnz_external'],
      vhost: [ext],
      auth: [...basicLines, 'AuthBasicProvider external', 'AuthExternal plexer', 'Require valid-user'],
    },
    {
      id: 'ext-socache',
      label: 'plexer authn (mod_authnz_external) + socache',
      modules: ['authnz_external', 'socache_shmcb', 'authn_socache'],
      server: shmcb('ext'),
      vhost: [ext],
      auth: [...socacheExternal, 'Require valid-user'],
    },
    {
      // What `plexer apache config` renders by default: the above, plus `plexer lockout` counting the 401s (its
      // 401 page, which counts before the answer, and its lock files on tmpfs) and a lock-file check on every
      // authenticated request (the renderer's own refusalPageLines and requireUnlocked).
      id: 'ext-socache-lockout',
      label: 'plexer authn + socache + plexer lockout (the generated default)',
      modules: ['authnz_external', 'socache_shmcb', 'authn_socache', 'proxy', 'proxy_http', 'headers'],
      server: [...shmcb('extl'), lockoutLogger(env.lockDir)],
      vhost: [
        `DefineExternalAuth plexer pipe "${NODE} ${PLEXER} authn --counted-by-log --config ${env.conf}"`,
        ...refusalPageLines(env.lockDir).map((line) => line.trimStart()),
      ],
      auth: [...socacheExternal, ...requireUnlocked(env.lockDir, 'valid-user')],
    },
    // `apache config --login-cache`: the same, with the logins in memcached (they outlive a reload) under the
    // context plexer revoke removes them from; and with --login-checker, authn as a thin client of plexer checker.
    {
      id: 'ext-memcache',
      label: 'the default with `--login-cache` (logins in memcached)',
      modules: ['authnz_external', 'socache_memcache', 'authn_socache', 'proxy', 'proxy_http', 'headers'],
      server: [`AuthnCacheSOCache memcache:${env.loginCacheSocket}`, lockoutLogger(`${env.lockDir}-m`)],
      vhost: [
        `DefineExternalAuth plexer pipe "${NODE} ${PLEXER} authn --counted-by-log --config ${env.conf}"`,
        ...refusalPageLines(`${env.lockDir}-m`).map((line) => line.trimStart()),
      ],
      auth: [...socacheExternal, 'AuthnCacheContext plexer', ...requireUnlocked(`${env.lockDir}-m`, 'valid-user')],
    },
    {
      id: 'ext-memcache-checker',
      label: 'the default with `--login-cache --login-checker` (authn a thin client of plexer checker)',
      modules: ['authnz_external', 'socache_memcache', 'authn_socache', 'proxy', 'proxy_http', 'headers'],
      server: [
        `AuthnCacheSOCache memcache:${env.loginCacheSocket}`,
        lockoutLogger(`${env.lockDir}-c`),
        `CustomLog "|${NODE} ${PLEXER} checker --socket ${env.checkerSocket} --config ${env.conf}" "-" "expr=false"`,
      ],
      vhost: [
        `DefineExternalAuth plexer pipe "${NODE} ${PLEXER} authn --counted-by-log --checker ${env.checkerSocket} --config ${env.conf}"`,
        ...refusalPageLines(`${env.lockDir}-c`).map((line) => line.trimStart()),
      ],
      auth: [...socacheExternal, 'AuthnCacheContext plexer', ...requireUnlocked(`${env.lockDir}-c`, 'valid-user')],
    },
    {
      id: 'authd',
      label: 'plexer authd (mod_authnz_fcgi)',
      modules: ['authnz_fcgi'],
      server: [`AuthnzFcgiDefineProvider authn plexer fcgi://127.0.0.1:${env.authdPort}/`],
      auth: [...basicLines, 'AuthBasicProvider plexer', 'Require valid-user'],
    },
    {
      // The same Apache lines as authd, against a server that checks nothing: what mod_authnz_fcgi itself
      // costs (a TCP connection and a FastCGI exchange per check), the ceiling for authd.
      id: 'fcgi-min',
      label: 'minimal FastCGI authorizer (answers 200 without checking anything): the ceiling of mod_authnz_fcgi',
      modules: ['authnz_fcgi'],
      server: [`AuthnzFcgiDefineProvider authn plexer fcgi://127.0.0.1:${env.fcgiMinPort}/`],
      auth: [...basicLines, 'AuthBasicProvider plexer', 'Require valid-user'],
      acceptsAnyPassword: true,
    },
  ];
}
