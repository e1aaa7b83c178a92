import { readFileSync } from 'node:fs';
import { coerceError, ConfigError } from './errors.js';
import { isLogLevel, type LogLevel } from './log.js';

// Apache starts a prg: map with an empty environment and mod_authnz_external builds its own, so the file is
// the only settings source Apache's helpers can rely on. For people at a shell the standard libpq variables
// and PLEXER_DATABASE_URL override it. Precedence, lowest first:
//   built-in defaults < config file < PGHOST/PGPORT/PGDATABASE/PGUSER/PGPASSWORD/PGPASSFILE < PLEXER_DATABASE_URL
//
// Two identities share the file. The pg_* / database_url settings are the helpers' (Apache runs them as
// www-data, which must read this file), a role that may only read and call three functions (`plexer db
// grant`). The admin commands (user, group, db, apache) connect as admin_pg_user instead, with its password in
// admin_pg_passfile, a file only root reads, or none at all with peer authentication: the admin password never
// has to be in a file www-data can read. There is deliberately no admin_pg_password.
export const DEFAULT_CONFIG_PATH = '/etc/plexer/plexer.conf';

export interface ConnectionSettings {
  connectionString?: string;
  host?: string;
  port?: number;
  database?: string;
  user?: string;
  password?: string;
  passfile?: string;
}

// Overrides of `connection` for the admin commands; empty means they use the helpers' connection.
export interface AdminIdentity {
  user?: string;
  passfile?: string;
}

export interface PlexerConfig {
  connection: ConnectionSettings;
  admin: AdminIdentity;
  schema: string;
  poolMax: number;
  cacheMax: number;
  cacheTtlMs: number;
  mapDeadlineMs: number;
  authnTimeoutMs: number;
  bcryptCost: number;
  lockoutMaxFailures: number;
  lockoutWindowSeconds: number;
  lockoutSeconds: number;
  logLevel: LogLevel;
  // Where the settings came from, for error messages; never the settings themselves (secrets).
  source: string;
}

type Setter = (config: PlexerConfig, value: string, where: string) => void;

function integer(min: number, max: number, apply: (config: PlexerConfig, n: number) => void): Setter {
  return (config, value, where) => {
    if (!/^\d+$/.test(value)) throw new ConfigError(`${where}: expected a whole number, got "${value}"`);
    const n = Number(value);
    if (n < min || n > max) throw new ConfigError(`${where}: ${n} is outside ${min}..${max}`);
    apply(config, n);
  };
}

function text(apply: (config: PlexerConfig, v: string) => void): Setter {
  return (config, value) => apply(config, value);
}

const settings = {
  database_url: text((c, v) => (c.connection.connectionString = v)),
  pg_host: text((c, v) => (c.connection.host = v)),
  pg_port: integer(1, 65535, (c, n) => (c.connection.port = n)),
  pg_database: text((c, v) => (c.connection.database = v)),
  pg_user: text((c, v) => (c.connection.user = v)),
  pg_password: text((c, v) => (c.connection.password = v)),
  pg_passfile: text((c, v) => (c.connection.passfile = v)),
  admin_pg_user: text((c, v) => (c.admin.user = v)),
  admin_pg_passfile: text((c, v) => (c.admin.passfile = v)),
  schema: (c, v, where) => {
    if (!/^[a-z_][a-z0-9_]{0,62}$/.test(v)) throw new ConfigError(`${where}: schema must be a lower-case SQL identifier`);
    c.schema = v;
  },
  pool_max: integer(1, 100, (c, n) => (c.poolMax = n)),
  cache_max: integer(1, 50_000_000, (c, n) => (c.cacheMax = n)),
  cache_ttl_ms: integer(1, 86_400_000, (c, n) => (c.cacheTtlMs = n)),
  map_deadline_ms: integer(1, 10_000, (c, n) => (c.mapDeadlineMs = n)),
  authn_timeout_ms: integer(100, 60_000, (c, n) => (c.authnTimeoutMs = n)),
  bcrypt_cost: integer(4, 15, (c, n) => (c.bcryptCost = n)),
  lockout_max_failures: integer(0, 1_000_000, (c, n) => (c.lockoutMaxFailures = n)),
  lockout_window_seconds: integer(1, 86_400 * 30, (c, n) => (c.lockoutWindowSeconds = n)),
  lockout_seconds: integer(1, 86_400 * 30, (c, n) => (c.lockoutSeconds = n)),
  log_level: (c, v, where) => {
    if (!isLogLevel(v)) throw new ConfigError(`${where}: log_level must be debug, info, warn or error`);
    c.logLevel = v;
  },
} satisfies Record<string, Setter>;

export type ConfigKey = keyof typeof settings;
export const CONFIG_KEYS = Object.keys(settings) as ConfigKey[];

// What formatConfig writes: the file's own keys and their values, in the order given.
export type ConfigValues = Partial<Record<ConfigKey, string | number>>;

export function defaultConfig(): PlexerConfig {
  return {
    connection: {},
    admin: {},
    schema: 'plexer',
    poolMax: 4,
    cacheMax: 200_000,
    cacheTtlMs: 300_000,
    mapDeadlineMs: 50,
    authnTimeoutMs: 5_000,
    bcryptCost: 10,
    lockoutMaxFailures: 10,
    lockoutWindowSeconds: 900,
    lockoutSeconds: 900,
    logLevel: 'info',
    source: 'built-in defaults',
  };
}

// `key = value` per line; `#` starts a comment line. Values are taken verbatim after trimming, so a password
// may hold any character but a newline.
export function parseConfigText(textContent: string, fileName: string, config = defaultConfig()): PlexerConfig {
  const lines = textContent.split(/\r?\n/);
  lines.forEach((raw, index) => {
    const line = raw.trim();
    if (line === '' || line.startsWith('#')) return;
    const where = `${fileName}:${index + 1}`;
    const eq = line.indexOf('=');
    if (eq <= 0) throw new ConfigError(`${where}: expected "key = value"`);
    const key = line.slice(0, eq).trim();
    const value = line.slice(eq + 1).trim();
    const set = Object.hasOwn(settings, key) ? settings[key as ConfigKey] : undefined;
    if (!set) throw new ConfigError(`${where}: unknown setting "${key}" (known: ${CONFIG_KEYS.join(', ')})`);
    set(config, value, `${where} ${key}`);
  });
  config.source = fileName;
  return config;
}

// The text parseConfigText reads back as exactly `values`, with `comment` as leading `#` lines. A value the
// parser would read differently (a line break ends it, blanks at its edges are trimmed) is refused rather
// than altered, and so is one the parser would refuse: a written config never fails only when loaded.
export function formatConfig(values: ConfigValues, comment = ''): string {
  const lines = comment === '' ? [] : comment.split('\n').map((line) => `# ${line}`.trimEnd());
  for (const [key, value] of Object.entries(values)) {
    if (value === undefined) continue;
    const text = String(value);
    if (/[\r\n]/.test(text) || text !== text.trim()) {
      throw new ConfigError(`${key}: a value with a line break or blanks at either end cannot be written to a config file`);
    }
    lines.push(`${key} = ${text}`);
  }
  const content = lines.join('\n') + '\n';
  parseConfigText(content, 'the config being written');
  return content;
}

function applyEnvironment(config: PlexerConfig, env: NodeJS.ProcessEnv): void {
  const c = config.connection;
  // A URL from the file would win over every separate field inside pg, so a PG* variable replaces it.
  if (['PGHOST', 'PGPORT', 'PGDATABASE', 'PGUSER'].some((name) => env[name])) delete c.connectionString;
  if (env.PGHOST) c.host = env.PGHOST;
  if (env.PGPORT) integer(1, 65535, (cfg, n) => (cfg.connection.port = n))(config, env.PGPORT, 'PGPORT');
  if (env.PGDATABASE) c.database = env.PGDATABASE;
  if (env.PGUSER) c.user = env.PGUSER;
  if (env.PGPASSWORD) c.password = env.PGPASSWORD;
  if (env.PGPASSFILE) c.passfile = env.PGPASSFILE;
  if (env.PLEXER_DATABASE_URL) c.connectionString = env.PLEXER_DATABASE_URL;
  // The environment describes the connection of the command being run, whichever it is: a user or URL named
  // there replaces admin_pg_user for admin commands too, and PGPASSFILE replaces admin_pg_passfile.
  if (env.PGUSER || env.PLEXER_DATABASE_URL) delete config.admin.user;
  if (env.PGPASSFILE) config.admin.passfile = env.PGPASSFILE;
}

// The config the admin commands connect with: the helpers' connection with admin_pg_user and
// admin_pg_passfile in place of pg_user, pg_password and pg_passfile (and of any user or password inside
// database_url). Unchanged when admin_pg_user is not set: a one-role installation keeps working.
export function adminConfig(config: PlexerConfig): PlexerConfig {
  const { user, passfile } = config.admin;
  if (user === undefined) {
    return passfile === undefined ? config : { ...config, connection: { ...config.connection, passfile } };
  }
  const { password: _password, passfile: _passfile, ...rest } = config.connection;
  const connection: ConnectionSettings = { ...rest, user, ...(passfile !== undefined ? { passfile } : {}) };
  if (connection.connectionString !== undefined) connection.connectionString = withoutCredentials(connection.connectionString);
  return { ...config, connection };
}

// A postgres:// URL without its user and password (in the authority or as query parameters), so that the
// separate user setting applies: node-postgres lets the URL win over separate fields.
function withoutCredentials(url: string): string {
  const match = /^(postgres(?:ql)?:\/\/)(?:[^@/?#]*@)?([^?#]*)(?:\?([^#]*))?(#.*)?$/.exec(url);
  if (!match) throw new ConfigError('database_url: not a postgresql:// URL, so admin_pg_user cannot replace its user');
  const params = new URLSearchParams(match[3] ?? '');
  params.delete('user');
  params.delete('password');
  const query = params.toString();
  return `${match[1]}${match[2]}${query ? `?${query}` : ''}${match[4] ?? ''}`;
}

export interface LoadConfigOptions {
  // An explicit --config must exist; the default path may be absent (a person at a shell using PG* only).
  path?: string;
  env?: NodeJS.ProcessEnv;
  // Where the default file is looked for (DEFAULT_CONFIG_PATH): tests point it away from the host's /etc.
  defaultPath?: string;
}

// The config file a command reads: --config, else $PLEXER_CONFIG, else the default path.
export function configFilePath(path?: string, env: NodeJS.ProcessEnv = process.env, defaultPath = DEFAULT_CONFIG_PATH): string {
  return path ?? env.PLEXER_CONFIG ?? defaultPath;
}

export function loadConfig({ path, env = process.env, defaultPath = DEFAULT_CONFIG_PATH }: LoadConfigOptions = {}): PlexerConfig {
  const file = configFilePath(path, env, defaultPath);
  let config = defaultConfig();
  let content: string | undefined;
  try {
    content = readFileSync(file, 'utf8');
  } catch (error) {
    const code = (error as NodeJS.ErrnoException).code;
    const explicit = path !== undefined || env.PLEXER_CONFIG !== undefined;
    if (code === 'EACCES') {
      throw new ConfigError(
        `cannot read config file ${file}: permission denied for uid ${process.getuid?.()} — ` +
          "run admin commands as root; Apache's helpers need the file readable by www-data (mode 640, root:www-data)",
      );
    }
    if (code !== 'ENOENT' || explicit) {
      throw new ConfigError(`cannot read config file ${file}: ${coerceError(error).message}`);
    }
  }
  if (content !== undefined) config = parseConfigText(content, file, config);
  applyEnvironment(config, env);
  return config;
}
