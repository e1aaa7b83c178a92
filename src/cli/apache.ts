import { mkdirSync, readFileSync, statSync } from 'node:fs';
import { dirname, resolve } from 'node:path';
import { checkDebianModules, debianConfDir, debianModuleCommands } from '../apache/debian.js';
import { apacheModules, renderApacheConfig, type ApacheConfigOptions, type PoolOptions } from '../apache/render/index.js';
import { checkRunAsUsers, configAccounts, prepareAccountDirs } from '../apache/accounts.js';
import { DEFAULT_STATE_DIR, runtimeAt, PACKAGE_ROOT } from '../apache/install-paths.js';
import { ensureSessionKeyFile, sessionKeyOptions } from '../apache/session-key.js';
import { sessionDatabaseFrom } from '../apache/session-dbd.js';
import { configFilePath } from '../config.js';
import { RefusedError, UsageError } from '../errors.js';
import { createRootOnlyLog, fileLogsOf } from '../apache/log-files.js';
import { writeFileAtomic } from '../files.js';
import { listAccounts } from '../store/accounts.js';
import { expectPositionals, parseCommand, parseWholeOrZero, parseWholeNumber, type Parsed } from './args.js';
import { DEFAULT_POOL_PREFIX, MAX_SLOTS, POOL_PREFIX_PATTERN } from '../pool/names.js';
import { preparePool } from '../pool/prepare.js';
import { print, type Command } from './command.js';
import { loadCommandConfig, withStore } from './store-session.js';

const help = `Usage: plexer apache config [--layout standalone|debian] [--out FILE] [--listen ADDRESS:PORT] [--state-dir DIR] [--server-name NAME]
                           [--settings-from map|config] [--auth-cache-timeout SECONDS] [--login-cache SOCKET] [--login-checker] [--trusted-proxy CIDR]…
                           [--tls --tls-cert FILE --tls-key FILE | --tls-proxy] [--map-dir DIR] [--reload]
                           [--auth basic|form [--session-key-file FILE] [--session-max-age SECONDS]]
                           [--routing wsgi|proxy|prefix] [--data-dir DIR] [--lock-dir DIR]
                           [--slots N [--pool-prefix P] [--slot-wait SECONDS] [--slot-min-idle SECONDS] [--slot-spares N]
                            [--slot-spare-idle SECONDS]]
       plexer apache modules [--auth basic|form] [--routing wsgi|proxy|prefix] [--tls] [--slots N]

Writes a complete Apache httpd configuration for the daemon groups in the database: one WSGIDaemonProcess per
group, WSGIRestrictEmbedded On, WSGIRestrictProcess listing exactly the pool, the RewriteMap prg: programs,
Basic authentication through mod_authnz_external with mod_authn_socache in front, and error pages of ours.
  --layout standalone     a whole server config for apache2 -f FILE (the default)
  --layout debian         a site for /etc/apache2/sites-available: nothing global (ServerRoot, PidFile, Mutex,
                          User, modules, the MPM stay apache2.conf's), its logs in \${APACHE_LOG_DIR}, no Listen
                          unless --listen is given (without it the site serves *:80, which ports.conf opens).
                          Refused (exit 1, nothing written) until the modules below are enabled in
                          \$APACHE_CONFDIR (default /etc/apache2). --reload is not used: run apache2ctl graceful.
"apache modules" prints the modules a configuration with these options needs, MPM first, for
a2enmod -q $(plexer apache modules …); mpm_prefork needs the other MPM disabled first (a2dismod -q mpm_event
mpm_worker): mod_authnz_external under a threaded MPM kills Apache's helpers at random.
  --slots N               a pool of N slots (mod_wsgi daemon groups slot-1 … slot-N, each with its own OS user,
                          PREFIX-s1 …, created here as root) that plexer binder binds to accounts on demand: groups
                          (accounts) and users then come and go without any reload; only a new N needs one. See
                          apache/POOL.md, "Accounts and slots", for sizing. With wsgi or prefix routing.
  --pool-prefix P         the prefix of the pool's OS users and groups (default plexer); two pools on one machine
                          need two
  --slot-wait SECONDS     how long a request waits for a slot when all are busy, before our 503 (default 10)
  --slot-min-idle SECONDS a bound slot goes to another account only after this long unused (default 0)
  --slot-spares N         free slots the binder keeps ready, emptied from accounts idle 30 s or more (default
                          one in eight slots)
  --slot-spare-idle SECONDS
                          how long an account goes without a request before its slot may become a spare
                          (default 30; 0 keeps the spares whatever it costs the accounts idle longest)
Without --slots, a new group needs one graceful reload (no connection is dropped): --reload sends it (SIGUSR1 to the httpd
whose PidFile is STATE-DIR/httpd.pid) after writing --out atomically. Moving, adding or removing users never
needs a reload.
  --settings-from map     each request asks "plexer map settings" (live; the default)
  --settings-from config  the settings modules are written into the config (one map lookup less per request;
                          a change then needs --reload)
  --two-maps              "plexer map group" + "plexer map settings" instead of the one "plexer map route"
                          lookup per request (the default)
  --map-dir DIR           Apache's own dbm: maps in DIR, kept current by "plexer sync --dir DIR" (no prg:
                          process, no lock; run "plexer sync --once" before Apache starts)
  --auth-cache-timeout    seconds a cached password stays valid in mod_authn_socache (default 60): a changed,
                          disabled or deleted user can keep working for up to this long (8 hours with
                          --login-cache, which removes a changed user's entries at once)
  --login-cache SOCKET    keep the login cache in memcached listening on this unix socket (apache/LOGINS.md, "Logins
                          that survive a reload"): logins outlive a graceful reload, and plexer revoke (a piped
                          logger) removes a user's cached logins as soon as the user changes
  --login-checker         plexer authn asks a long-running plexer checker (a piped logger) instead of checking
                          by itself: a password not in Apache's cache costs a Node start and a round trip
                          (apache/LOGINS.md, "Cheap checks when the cache misses"); authn checks by itself when
                          the checker is down
  --trusted-proxy CIDR    a proxy (IP or CIDR block; repeat for more) whose X-Forwarded-For names the client
                          (mod_remoteip): lockouts then count the client's address, not the proxy's. From any
                          other peer the header is ignored
  --auth basic            HTTP Basic authentication (the default)
  --auth form             a login page (/_plexer/login/login.html) and server-side sessions in plexer's database
                          (mod_session_dbd as the helpers' role, pg_* settings of the config; logout ends every
                          copy of a session), encrypted with the passphrase read from --session-key-file (default
                          /etc/plexer/session.key), which is created with 32 random bytes, mode 0600, owner root,
                          if it does not exist
  --tls-proxy             a TLS-terminating proxy is in front: session cookies get Secure, the login page's
                          Origin check expects https://
  --session-max-age       idle lifetime of a session cookie in seconds (default 28800)
  --routing wsgi          one mod_wsgi daemon group per tenant (the default)
  --routing proxy         mod_proxy to the group's backend column (plexer group set NAME --backend TARGET)
  --routing prefix        like wsgi, with /app/x rewritten internally to /u/USER/app/x (see apache/MODES.md)
  --data-dir DIR          root of the groups' data directories (default STATE-DIR/data): group G's Django gets
                          DIR/G. With --out, as root, DIR (root, 0711) and every DIR/G (0700, owned by G's run-as
                          user, else www-data) are created or corrected. A group's run-as account must exist here.
  --lock-dir DIR          where \`plexer lockout\` keeps its lock files, one per lockout in force (default
                          /run/plexer/locks). Keep it on tmpfs: a file made on a journaled file system can wait
                          tens of milliseconds behind other processes' fsyncs while guesses go on being answered.
                          Two Apaches on one host need two directories.
--out is written atomically, mode 0600 (owner root when run as root): it names every tenant and Apache's root
parent is its only reader.
Paths of the helpers are absolute (Apache starts them with an empty environment): node is ${process.execPath},
plexer is ${PACKAGE_ROOT}/bin/plexer.`;

const options = {
  out: { type: 'string' },
  listen: { type: 'string' },
  'state-dir': { type: 'string' },
  'server-name': { type: 'string' },
  'settings-from': { type: 'string' },
  'auth-cache-timeout': { type: 'string' },
  'login-cache': { type: 'string' },
  'login-checker': { type: 'boolean' },
  tls: { type: 'boolean' },
  'tls-proxy': { type: 'boolean' },
  'two-maps': { type: 'boolean' },
  'tls-cert': { type: 'string' },
  'tls-key': { type: 'string' },
  reload: { type: 'boolean' },
  'runtime-root': { type: 'string' },
  'map-dir': { type: 'string' },
  auth: { type: 'string' },
  routing: { type: 'string' },
  'session-key-file': { type: 'string' },
  'session-max-age': { type: 'string' },
  'data-dir': { type: 'string' },
  'lock-dir': { type: 'string' },
  layout: { type: 'string' },
  'trusted-proxy': { type: 'string', multiple: true },
  slots: { type: 'string' },
  'pool-prefix': { type: 'string' },
  'slot-wait': { type: 'string' },
  'slot-min-idle': { type: 'string' },
  'slot-spares': { type: 'string' },
  'slot-spare-idle': { type: 'string' },
} as const;

function poolOption(values: Parsed<typeof options>['values']): PoolOptions | undefined {
  if (values.slots === undefined) {
    if (values['pool-prefix'] ?? values['slot-wait'] ?? values['slot-min-idle'] ?? values['slot-spares'] ?? values['slot-spare-idle'])
      throw new UsageError('--pool-prefix, --slot-wait, --slot-min-idle, --slot-spares and --slot-spare-idle need --slots');
    return undefined;
  }
  const slots = parseWholeNumber(values.slots, '--slots');
  if (slots > MAX_SLOTS) throw new UsageError(`--slots must be at most ${MAX_SLOTS}`);
  const prefix = values['pool-prefix'] ?? DEFAULT_POOL_PREFIX;
  if (!POOL_PREFIX_PATTERN.test(prefix)) throw new UsageError('--pool-prefix must be 2..12 lower-case letters or digits, a letter first');
  const waitSeconds = parseWholeOrZero(values['slot-wait'], '--slot-wait');
  const minIdleSeconds = parseWholeOrZero(values['slot-min-idle'], '--slot-min-idle');
  const spares = parseWholeOrZero(values['slot-spares'], '--slot-spares');
  const spareIdleSeconds = parseWholeOrZero(values['slot-spare-idle'], '--slot-spare-idle');
  return {
    slots,
    prefix,
    ...(spares !== undefined ? { spares } : {}),
    ...(spareIdleSeconds !== undefined ? { spareIdleSeconds } : {}),
    ...(waitSeconds !== undefined ? { waitSeconds } : {}),
    ...(minIdleSeconds !== undefined ? { minIdleSeconds } : {}),
  };
}

export const command: Command = {
  summary: 'write the Apache configuration for the daemon group pool',
  help,
  async run(argv) {
    const { values, positionals } = parseCommand(argv, options);
    if (values.help) return (print(help), 0);
    const [action] = expectPositionals(positionals, ['action']);
    if (action !== 'config' && action !== 'modules') throw new UsageError(`unknown apache action "${action}"; see plexer apache --help`);
    const auth = values.auth ?? 'basic';
    if (auth !== 'basic' && auth !== 'form') throw new UsageError('--auth takes basic or form');
    const routing = values.routing ?? 'wsgi';
    if (routing !== 'wsgi' && routing !== 'proxy' && routing !== 'prefix') throw new UsageError('--routing takes wsgi, proxy or prefix');
    const trustedProxies = ([] as string[]).concat(values['trusted-proxy'] ?? []);
    const pool = poolOption(values);
    if (pool && routing === 'proxy')
      throw new UsageError('--slots is for --routing wsgi or prefix; proxy routing keeps per-account backends');
    // What a2enmod must enable in Debian's Apache (the standalone layout loads its own list).
    const modules = apacheModules({
      auth,
      routing,
      tls: values.tls === true,
      trustedProxies,
      layout: 'debian',
      ...(pool ? { pool } : {}),
      ...(values['login-cache'] ? { loginCacheSocket: values['login-cache'] } : {}),
    });
    if (action === 'modules') return (print(modules.join(' ')), 0);
    const layout = values.layout ?? 'standalone';
    if (layout !== 'standalone' && layout !== 'debian') throw new UsageError('--layout takes standalone or debian');
    if (layout === 'debian') {
      if (values.reload) throw new UsageError("--reload is for the standalone layout; with Debian's Apache run apache2ctl graceful");
      const confDir = debianConfDir();
      const fixes = debianModuleCommands(checkDebianModules(confDir, modules));
      if (fixes.length > 0) {
        throw new RefusedError(
          `${confDir} lacks what this configuration needs; as root, run:\n  ${fixes.join('\n  ')}\nthen this command again`,
        );
      }
    }
    const listen = values.listen ?? (layout === 'debian' ? '*:80' : '127.0.0.1:8080');
    const match = /^([0-9.]+|\[[0-9a-fA-F:]+\]|\*):(\d{1,5})$/.exec(listen);
    if (!match) throw new UsageError(`--listen must be ADDRESS:PORT, got "${listen}"`);
    const settingsFrom = values['settings-from'] ?? 'map';
    if (settingsFrom !== 'map' && settingsFrom !== 'config') throw new UsageError('--settings-from takes map or config');
    if (auth !== 'form' && (values['session-key-file'] || values['session-max-age']))
      throw new UsageError('--session-key-file and --session-max-age need --auth form');
    if (values.reload && !values.out) throw new UsageError('--reload needs --out (the file Apache loads)');
    // The helpers get the file this command read: Apache gives them no PLEXER_CONFIG.
    const configFile = resolve(configFilePath(values.config));
    const config = loadCommandConfig(values.config);
    const stateDir = resolve(values['state-dir'] ?? DEFAULT_STATE_DIR);
    const runtime = runtimeAt(resolve(values['runtime-root'] ?? PACKAGE_ROOT));
    refuseTenantWritableCode(runtime.pythonPath, runtime.wsgiScript);
    const accounts = await withStore(config, (pool) => listAccounts(pool));
    const dataDir = resolve(values['data-dir'] ?? `${stateDir}/data`);
    const root = process.getuid?.() === 0;
    if (pool) {
      // The slot users must exist before Apache starts (it refuses an unknown user=); accounts need nothing here.
      if (values.out && root) preparePool({ slots: pool.slots, prefix: pool.prefix ?? DEFAULT_POOL_PREFIX, stateDir });
    } else if (values.out && root) {
      prepareAccountDirs(dataDir, accounts);
    } else {
      checkRunAsUsers(accounts);
    }
    const rendered = renderApacheConfig({
      renderedBy: shellCommand([process.execPath, resolve(PACKAGE_ROOT, 'bin/plexer'), 'apache', ...argv]),
      listenAddress: match[1]!,
      port: Number(match[2]),
      layout,
      listen: values.listen !== undefined,
      serverName: values['server-name'] ?? 'localhost',
      stateDir,
      dataDir,
      plexerCommand: runtime.plexerCommand,
      configFile,
      wsgiScript: runtime.wsgiScript,
      pythonPath: runtime.pythonPath,
      errorPagesDir: runtime.errorPagesDir,
      accounts: configAccounts(accounts, settingsFrom),
      mapUser: 'www-data:www-data',
      tls: values.tls === true,
      ...(values['tls-cert'] ? { tlsCertificateFile: resolve(values['tls-cert']) } : {}),
      ...(values['tls-key'] ? { tlsCertificateKeyFile: resolve(values['tls-key']) } : {}),
      // With the login cache in memcached a changed user's entries go at once (plexer revoke): they may live long.
      authCacheTimeoutSeconds: values['auth-cache-timeout']
        ? parseWholeNumber(values['auth-cache-timeout'], '--auth-cache-timeout')
        : values['login-cache']
          ? 28_800
          : 60,
      ...(values['login-cache'] ? { loginCacheSocket: resolve(values['login-cache']) } : {}),
      ...(values['login-checker'] ? { loginChecker: true } : {}),
      trustedProxies,
      ...(values['map-dir'] ? { mapDir: resolve(values['map-dir']) } : {}),
      ...(values['lock-dir'] ? { lockDir: resolve(values['lock-dir']) } : {}),
      auth,
      routing,
      ...(auth === 'form' ? sessionKeyOptions(ensureSessionKeyFile(resolve(values['session-key-file'] ?? '/etc/plexer/session.key'))) : {}),
      ...(auth === 'form' ? { sessionDatabase: sessionDatabaseFrom(config) } : {}),
      ...(values['tls-proxy'] ? { tlsProxy: true } : {}),
      ...(values['two-maps'] ? { twoMaps: true } : {}),
      ...(values['session-max-age'] ? { sessionMaxAgeSeconds: parseWholeNumber(values['session-max-age'], '--session-max-age') } : {}),
      ...(pool ? { pool } : {}),
    } satisfies ApacheConfigOptions);
    if (!values.out) return (process.stdout.write(rendered), 0);
    const out = resolve(values.out);
    writeFileAtomic(out, rendered, { mode: 0o600, ...(root ? { owner: { uid: 0, gid: 0 } } : {}) });
    // Debian's logs live in /var/log/apache2 (root:adm 0750); the standalone layout's in the state directory.
    if (root && layout === 'standalone') {
      mkdirSync(stateDir, { recursive: true, mode: 0o711 });
      for (const log of fileLogsOf(rendered)) createRootOnlyLog(log);
    }
    print(pool ? `wrote ${out} (a pool of ${pool.slots} slots)` : `wrote ${out} (${accounts.length} daemon group(s))`);
    if (pool && !values.reload) {
      print(
        `accounts (groups) and users come and go without a reload; a new --slots takes effect after a graceful reload${layout === 'debian' ? ': apache2ctl graceful' : ''}`,
      );
      return 0;
    }
    if (!values.reload) {
      print(
        layout === 'debian'
          ? 'new or removed daemon groups take effect after a graceful reload: apache2ctl graceful'
          : 'new or removed daemon groups take effect after a graceful reload: run again with --reload, or apachectl -k graceful',
      );
      return 0;
    }
    const pidFile = `${stateDir}/httpd.pid`;
    let pid: number;
    try {
      pid = Number(readFileSync(pidFile, 'utf8').trim());
    } catch {
      throw new RefusedError(`cannot read ${pidFile}: is this Apache running?`);
    }
    // SIGUSR1 is apachectl -k graceful: children finish their requests, nothing is dropped.
    process.kill(pid, 'SIGUSR1');
    print(`graceful reload sent to httpd ${pid}`);
    return 0;
  },
};

// Python runs what it finds in a daemon's python-path (.pth files, sitecustomize) when the interpreter starts,
// before the WSGI script can seal what the daemon inherited from Apache (apache/wsgi/plexer.wsgi): whoever may
// write there, or replace the script, runs code in every tenant's daemon first. Only root may.
function refuseTenantWritableCode(...paths: string[]): void {
  for (const path of paths) {
    const dir = statSync(path).isDirectory() ? path : dirname(path);
    for (const checked of new Set([dir, path])) {
      const st = statSync(checked);
      if (st.uid !== 0 || (st.mode & 0o022) !== 0) {
        throw new RefusedError(
          `${checked} may be changed by others than root (owner uid ${st.uid}, mode ${(st.mode & 0o7777).toString(8)}): code there runs in every tenant's daemon before plexer.wsgi seals it; chown -R root: and chmod -R go-w the checkout`,
        );
      }
    }
  }
}

// The command as one pasteable line: arguments quoted for sh where they need it.
function shellCommand(words: string[]): string {
  return words.map((word) => (/^[A-Za-z0-9_@%+=:,./-]+$/.test(word) ? word : `'${word.replace(/'/g, `'\\''`)}'`)).join(' ');
}
