import { dataDirIn } from '../install-paths.js';
import { createHmac } from 'node:crypto';
import { ConfigError } from '../../errors.js';
import { isIP } from 'node:net';
import { ownSlotPerAccount } from '../../accounts/model.js';
import { isAccountName, ROLE_NAME_PATTERN, RUN_AS_PATTERN, SETTINGS_MODULE_PATTERN } from '../../names.js';
import type { SessionDatabase } from '../session-dbd.js';
import type { ApacheConfigOptions } from './options.js';
import { DEFAULT_LOCK_DIR } from '../../lockout/lock-files.js';
import { DEFAULT_POOL_PREFIX, MAX_SLOTS, POOL_PREFIX_PATTERN } from '../../pool/names.js';

const SAFE_PATH = /^\/[A-Za-z0-9._\/+@=,-]*$/;
const SAFE_WORD = /^[A-Za-z0-9._:+@=-]+$/;
const SAFE_URL_PATH = /^\/[A-Za-z0-9._\/-]*$/;

// A PlexerError (exit 2, the message alone): a bad option reaches the operator as what to change, not as an
// internal error.
export class ApacheConfigError extends ConfigError {}

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
  if (!/^[^"\\$\x00-\x1f\x7f]{1,2000}$/.test(d.conninfo))
    throw new ApacheConfigError('sessionDatabase.conninfo may not hold quotes, backslashes, $ or control characters');
  return { conninfo: d.conninfo, schema: word('sessionDatabase.schema', d.schema) };
}

// One line of printable text: it becomes a comment, and a command someone pastes.
function renderedBy(command: string): string {
  if (!/^[\x20-\x7e]{1,2000}$/.test(command)) throw new ApacheConfigError('renderedBy must be one line of printable ASCII');
  return command;
}

function positiveInt(label: string, value: number, max: number): number {
  if (!Number.isInteger(value) || value < 1 || value > max)
    throw new ApacheConfigError(`${label} must be an integer in 1..${max}: ${value}`);
  return value;
}

export function validate(o: ApacheConfigOptions) {
  const stateDir = path('stateDir', o.stateDir);
  const accounts = o.accounts.map((a) => {
    if (!isAccountName(a.name)) throw new ApacheConfigError(`invalid account name ${JSON.stringify(a.name)}`);
    if (a.settingsModule !== null && !SETTINGS_MODULE_PATTERN.test(a.settingsModule)) {
      throw new ApacheConfigError(`invalid settings module ${JSON.stringify(a.settingsModule)} for account ${a.name}`);
    }
    if (a.runAs != null && (!RUN_AS_PATTERN.test(a.runAs) || /(^|:)root(:|$)/.test(a.runAs))) {
      throw new ApacheConfigError(`invalid run-as ${JSON.stringify(a.runAs)} for account ${a.name}`);
    }
    return a;
  });
  const seen = new Set<string>();
  for (const a of accounts) {
    if (seen.has(a.name)) throw new ApacheConfigError(`duplicate account ${a.name}`);
    seen.add(a.name);
  }
  if (o.plexerCommand.length < 1) throw new ApacheConfigError('plexerCommand is empty');
  const plexerCommand = o.plexerCommand.map((part, i) =>
    i === 0
      ? path('plexerCommand[0]', part)
      : i === 1 && part.startsWith('/')
        ? path('plexerCommand[1]', part)
        : word(`plexerCommand[${i}]`, part),
  );
  const mapUser = o.mapUser;
  if (!/^[a-z_][a-z0-9_-]*:[a-z_][a-z0-9_-]*$/.test(mapUser))
    throw new ApacheConfigError(`mapUser must be USER:GROUP: ${JSON.stringify(mapUser)}`);
  const mountPath = o.mountPath ?? '/app';
  if (!SAFE_URL_PATH.test(mountPath) || mountPath === '/' || mountPath.endsWith('/'))
    throw new ApacheConfigError(`invalid mountPath ${mountPath}`);
  const roleLocations = (o.roleLocations ?? []).map((r) => {
    if (!SAFE_URL_PATH.test(r.path) || !(r.path === mountPath || r.path.startsWith(mountPath + '/'))) {
      throw new ApacheConfigError(`role location ${JSON.stringify(r.path)} must be under ${mountPath}`);
    }
    if (r.roles.length === 0 || !r.roles.every((role) => ROLE_NAME_PATTERN.test(role)))
      throw new ApacheConfigError(`invalid roles for ${r.path}`);
    return r;
  });
  const authRealm = o.authRealm ?? 'plexer';
  if (!/^[A-Za-z0-9 ._-]{1,64}$/.test(authRealm)) throw new ApacheConfigError(`invalid authRealm ${JSON.stringify(authRealm)}`);
  const logLevel = o.logLevel ?? 'warn';
  if (!/^[a-z_:0-9 ]+$/.test(logLevel)) throw new ApacheConfigError(`invalid logLevel ${logLevel}`);
  const layout = o.layout ?? 'standalone';
  if (layout !== 'standalone' && layout !== 'debian')
    throw new ApacheConfigError(`layout must be standalone or debian: ${JSON.stringify(layout)}`);
  if (!/^[0-9.]+$|^\[[0-9a-fA-F:]+\]$|^\*$/.test(o.listenAddress))
    throw new ApacheConfigError(`listenAddress must be an IP literal or *: ${o.listenAddress}`);
  const auth = o.auth ?? 'basic';
  if (auth !== 'basic' && auth !== 'form') throw new ApacheConfigError(`auth must be basic or form: ${JSON.stringify(auth)}`);
  const routing = o.routing ?? 'wsgi';
  if (!['wsgi', 'proxy', 'prefix'].includes(routing))
    throw new ApacheConfigError(`routing must be wsgi, proxy or prefix: ${JSON.stringify(routing)}`);
  const errorPagesDir = path('errorPagesDir', o.errorPagesDir);
  const siblingOfErrors = (name: string) => `${errorPagesDir.replace(/\/[^/]+$/, '')}/${name}`;
  let sessionPassphrase: string | undefined;
  let sessionPassphraseFile: string | undefined;
  let formFieldSecret: string | undefined;
  if (auth === 'form') {
    if ((o.sessionPassphrase === undefined) === (o.sessionPassphraseFile === undefined)) {
      throw new ApacheConfigError('form authentication needs exactly one of sessionPassphrase and sessionPassphraseFile');
    }
    if (o.sessionPassphrase !== undefined && !/^[A-Za-z0-9_-]{32,256}$/.test(o.sessionPassphrase)) {
      throw new ApacheConfigError('sessionPassphrase must be 32..256 characters of [A-Za-z0-9_-]');
    }
    sessionPassphrase = o.sessionPassphrase;
    if (o.sessionPassphraseFile !== undefined) sessionPassphraseFile = path('sessionPassphraseFile', o.sessionPassphraseFile);
    formFieldSecret =
      o.formFieldSecret ??
      (o.sessionPassphrase === undefined
        ? undefined
        : createHmac('sha256', o.sessionPassphrase).update('plexer form fields').digest('hex').slice(0, 32));
    if (formFieldSecret === undefined || !/^[0-9a-f]{32,64}$/.test(formFieldSecret)) {
      throw new ApacheConfigError(
        'form authentication with sessionPassphraseFile needs formFieldSecret: 32..64 hex digits (formFieldSecret() of the key file)',
      );
    }
  }
  const loginSuccessPath = o.loginSuccessPath ?? `${mountPath}/`;
  if (!SAFE_URL_PATH.test(loginSuccessPath)) throw new ApacheConfigError(`invalid loginSuccessPath ${loginSuccessPath}`);
  const userPrefix = o.userPrefix ?? '/u';
  if (
    !/^\/[a-z0-9_-]+$/.test(userPrefix) ||
    userPrefix === '/_plexer' ||
    mountPath === userPrefix ||
    mountPath.startsWith(userPrefix + '/')
  ) {
    throw new ApacheConfigError(`invalid userPrefix ${userPrefix}: one segment of [a-z0-9_-], not the mount`);
  }
  if (routing !== 'wsgi' && roleLocations.length > 0) throw new ApacheConfigError('roleLocations are supported with routing wsgi only');
  // Prefix routing moves each request internally to the user's prefix, and the request that runs there
  // authenticates again: with the login page it finds no session (mod_session took the cookie off the request
  // when it first read it) and is sent to the login page. Refused rather than rendered broken.
  if (auth === 'form' && routing === 'prefix')
    throw new ApacheConfigError(
      'the login page (--auth form) does not work with --routing prefix: use --routing wsgi, or Basic with prefix',
    );
  const pool = o.pool === undefined ? undefined : poolOptions(o.pool, routing);
  const runUser = word('runUser', o.runUser ?? 'www-data');
  const runGroup = word('runGroup', o.runGroup ?? 'www-data');
  const pythonPath = path('pythonPath', o.pythonPath);
  // A pool's slots are bound at run time: no account is rendered.
  const bindings = pool ? [] : ownSlotPerAccount(accounts, { user: runUser, group: runGroup }, pythonPath);
  return {
    auth,
    routing,
    sessionPassphrase,
    sessionPassphraseFile,
    formFieldSecret,
    sessionMaxAge: positiveInt('sessionMaxAgeSeconds', o.sessionMaxAgeSeconds ?? 28800, 31 * 86400),
    sessionDatabase: o.sessionDatabase === undefined ? undefined : sessionDatabase(o.sessionDatabase),
    httpsToClient: o.tls || o.tlsProxy === true,
    loginPagesDir: o.loginPagesDir === undefined ? siblingOfErrors('login') : path('loginPagesDir', o.loginPagesDir),
    loginSuccessPath,
    proxyMountDir: o.proxyMountDir === undefined ? siblingOfErrors('mount') : path('proxyMountDir', o.proxyMountDir),
    proxyTimeout: positiveInt('proxyTimeoutSeconds', o.proxyTimeoutSeconds ?? 60, 3600),
    renderedBy: o.renderedBy === undefined ? undefined : renderedBy(o.renderedBy),
    connectionsPerAddress: o.connectionsPerAddress === 0 ? 0 : positiveInt('connectionsPerAddress', o.connectionsPerAddress ?? 20, 10000),
    userPrefix,
    listen: `${o.listenAddress}:${positiveInt('port', o.port, 65535)}`,
    serverName: word('serverName', o.serverName),
    stateDir,
    dataDir: o.dataDir === undefined ? dataDirIn(stateDir) : path('dataDir', o.dataDir),
    mapDir: o.mapDir === undefined ? undefined : path('mapDir', o.mapDir),
    command: plexerCommand.join(' '),
    configFile: path('configFile', o.configFile),
    wsgiScript: path('wsgiScript', o.wsgiScript),
    wsgiDir: path('wsgiScript', o.wsgiScript).replace(/\/[^/]+$/, '') || '/',
    pythonPath,
    errorPagesDir: path('errorPagesDir', o.errorPagesDir),
    mountPath,
    pool,
    mapUser,
    runUser,
    runGroup,
    tls: o.tls,
    cert: o.tls ? path('tlsCertificateFile', o.tlsCertificateFile) : undefined,
    key: o.tls ? path('tlsCertificateKeyFile', o.tlsCertificateKeyFile) : undefined,
    authCacheTimeout: positiveInt('authCacheTimeoutSeconds', o.authCacheTimeoutSeconds, 86400),
    loginCacheSocket: o.loginCacheSocket === undefined ? undefined : path('loginCacheSocket', o.loginCacheSocket),
    loginChecker: o.loginChecker === true,
    trustedProxies: (o.trustedProxies ?? []).map(cidr),
    authRealm,
    roleLocations,
    wsgiThreads: positiveInt('wsgiThreads', o.wsgiThreads ?? 4, 64),
    logLevel,
    modulesDir: path('modulesDir', o.modulesDir ?? '/usr/lib/apache2/modules'),
    layout,
    ownListen: layout === 'standalone' || o.listen === true,
    twoMaps: o.twoMaps === true,
    lockDir: o.lockDir === undefined ? DEFAULT_LOCK_DIR : path('lockDir', o.lockDir),
    bindings,
    disabled: pool ? [] : accounts.filter((a) => !a.enabled),
    // The bindings whose account takes its settings module from a map rather than from this config.
    mapped: bindings.filter((b) => b.account.settingsModule === null),
  };
}

export type Validated = ReturnType<typeof validate>;

function poolOptions(p: NonNullable<ApacheConfigOptions['pool']>, routing: string) {
  if (routing === 'proxy')
    throw new ApacheConfigError('a slot pool is for routing wsgi or prefix; proxy routing keeps per-account backends');
  const prefix = p.prefix ?? DEFAULT_POOL_PREFIX;
  if (!POOL_PREFIX_PATTERN.test(prefix)) throw new ApacheConfigError(`invalid pool prefix ${JSON.stringify(prefix)}`);
  const seconds = (label: string, value: number | undefined, fallback: number) => {
    const s = value ?? fallback;
    if (!Number.isInteger(s) || s < 0 || s > 3600) throw new ApacheConfigError(`${label} must be an integer in 0..3600: ${s}`);
    return s;
  };
  const slots = positiveInt('pool.slots', p.slots, MAX_SLOTS);
  if (p.spares !== undefined && (!Number.isInteger(p.spares) || p.spares < 0 || p.spares >= slots))
    throw new ApacheConfigError(`pool.spares must be an integer in 0..${slots - 1}: ${p.spares}`);
  return {
    slots,
    spares: p.spares,
    spareIdleSeconds: p.spareIdleSeconds === undefined ? undefined : seconds('pool.spareIdleSeconds', p.spareIdleSeconds, 30),
    prefix,
    waitSeconds: seconds('pool.waitSeconds', p.waitSeconds, 10),
    minIdleSeconds: seconds('pool.minIdleSeconds', p.minIdleSeconds, 0),
  };
}

// How Apache starts a plexer helper: absolute paths, split on whitespace, --config because it gets no environment.
export function helperCommand(v: Validated, args: string): string {
  return `${v.command} ${args} --config ${v.configFile}`;
}
