// The config file format and where each setting comes from.
import { mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import {
  adminConfig,
  CONFIG_KEYS,
  DEFAULT_CONFIG_PATH,
  defaultConfig,
  formatConfig,
  loadConfig,
  parseConfigText,
  type ConfigKey,
  type ConfigValues,
  type PlexerConfig,
} from '../../src/config.js';
import { ConfigError } from '../../src/errors.js';

function tempFile(content: string): string {
  const dir = mkdtempSync(join(tmpdir(), 'plexer-config-test-'));
  const path = join(dir, 'plexer.conf');
  writeFileSync(path, content);
  return path;
}

function parseError(text: string): ConfigError {
  try {
    parseConfigText(text, '/etc/p.conf');
  } catch (error) {
    expect(error).toBeInstanceOf(ConfigError);
    return error as ConfigError;
  }
  throw new Error('no error thrown');
}

describe('parseConfigText', () => {
  it('reads every setting, skipping comments and blank lines, trimming around keys and values', () => {
    const config = parseConfigText(
      [
        '# plexer settings',
        '',
        '   ',
        '  # indented comment',
        'pg_host = /run/postgresql',
        'pg_port=6543',
        '  pg_database =  routing  ',
        'pg_user = www',
        'pg_password = p#ss = w0rd ',
        'pg_passfile = /etc/plexer/pgpass',
        'admin_pg_user = plexer_admin',
        'admin_pg_passfile = /root/.pgpass',
        'schema = tenant_routing',
        'pool_max = 7',
        'cache_max = 1000',
        'cache_ttl_ms = 60000',
        'map_deadline_ms = 25',
        'authn_timeout_ms = 3000',
        'bcrypt_cost = 12',
        'lockout_max_failures = 0',
        'lockout_window_seconds = 60',
        'lockout_seconds = 120',
        'log_level = debug',
        '',
      ].join('\n'),
      '/etc/p.conf',
    );
    expect(config).toEqual({
      connection: {
        host: '/run/postgresql',
        port: 6543,
        database: 'routing',
        user: 'www',
        password: 'p#ss = w0rd',
        passfile: '/etc/plexer/pgpass',
      },
      admin: { user: 'plexer_admin', passfile: '/root/.pgpass' },
      schema: 'tenant_routing',
      poolMax: 7,
      cacheMax: 1000,
      cacheTtlMs: 60000,
      mapDeadlineMs: 25,
      authnTimeoutMs: 3000,
      bcryptCost: 12,
      lockoutMaxFailures: 0,
      lockoutWindowSeconds: 60,
      lockoutSeconds: 120,
      logLevel: 'debug',
      source: '/etc/p.conf',
    });
  });

  it('an empty file gives the defaults, with the file as source', () => {
    expect(parseConfigText('', 'x.conf')).toEqual({ ...defaultConfig(), source: 'x.conf' });
    expect(parseConfigText('# nothing\n\n', 'x.conf')).toEqual({ ...defaultConfig(), source: 'x.conf' });
  });

  it('has the documented defaults', () => {
    expect(defaultConfig()).toEqual({
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
    });
  });

  it('accepts CRLF line endings', () => {
    const config = parseConfigText('pg_user = www\r\npool_max = 3\r\n', 'w.conf');
    expect(config.connection.user).toBe('www');
    expect(config.poolMax).toBe(3);
  });

  it('reads database_url verbatim', () => {
    const config = parseConfigText('database_url = postgresql://u:p%40ss@db:5433/plexer?sslmode=require', 'f');
    expect(config.connection.connectionString).toBe('postgresql://u:p%40ss@db:5433/plexer?sslmode=require');
  });

  it('a later line overrides an earlier one', () => {
    expect(parseConfigText('pool_max = 2\npool_max = 9\n', 'f').poolMax).toBe(9);
  });

  it('names the file, line and key of an unknown setting and lists the known ones', () => {
    const error = parseError('# c\npool_max = 2\n\npgHost = db\n');
    expect(error.message).toBe(`/etc/p.conf:4: unknown setting "pgHost" (known: ${CONFIG_KEYS.join(', ')})`);
    expect(error.exitCode).toBe(2);
  });

  it('refuses a line without "key = value"', () => {
    expect(parseError('pool_max 4').message).toBe('/etc/p.conf:1: expected "key = value"');
    expect(parseError('\n= 4').message).toBe('/etc/p.conf:2: expected "key = value"');
  });

  it.each([
    ['pool_max = four', '/etc/p.conf:1 pool_max: expected a whole number, got "four"'],
    ['pool_max = -1', '/etc/p.conf:1 pool_max: expected a whole number, got "-1"'],
    ['pool_max = 1.5', '/etc/p.conf:1 pool_max: expected a whole number, got "1.5"'],
    ['pool_max = 1e3', '/etc/p.conf:1 pool_max: expected a whole number, got "1e3"'],
    ['pool_max = ', '/etc/p.conf:1 pool_max: expected a whole number, got ""'],
    ['pool_max = 0x10', '/etc/p.conf:1 pool_max: expected a whole number, got "0x10"'],
    ['pg_port = 8080 # http', '/etc/p.conf:1 pg_port: expected a whole number, got "8080 # http"'],
  ])('refuses a bad whole number: %j', (line, message) => {
    expect(parseError(line).message).toBe(message);
  });

  it.each([
    ['pool_max = 0', '/etc/p.conf:1 pool_max: 0 is outside 1..100'],
    ['pool_max = 101', '/etc/p.conf:1 pool_max: 101 is outside 1..100'],
    ['pg_port = 0', '/etc/p.conf:1 pg_port: 0 is outside 1..65535'],
    ['pg_port = 65536', '/etc/p.conf:1 pg_port: 65536 is outside 1..65535'],
    ['bcrypt_cost = 3', '/etc/p.conf:1 bcrypt_cost: 3 is outside 4..15'],
    ['bcrypt_cost = 16', '/etc/p.conf:1 bcrypt_cost: 16 is outside 4..15'],
    ['authn_timeout_ms = 99', '/etc/p.conf:1 authn_timeout_ms: 99 is outside 100..60000'],
    ['map_deadline_ms = 10001', '/etc/p.conf:1 map_deadline_ms: 10001 is outside 1..10000'],
    ['cache_ttl_ms = 0', '/etc/p.conf:1 cache_ttl_ms: 0 is outside 1..86400000'],
    ['cache_max = 50000001', '/etc/p.conf:1 cache_max: 50000001 is outside 1..50000000'],
    ['lockout_window_seconds = 2592001', '/etc/p.conf:1 lockout_window_seconds: 2592001 is outside 1..2592000'],
  ])('refuses an out-of-range number: %j', (line, message) => {
    expect(parseError(line).message).toBe(message);
  });

  it('accepts the bounds of each range', () => {
    const low = parseConfigText('pool_max = 1\nbcrypt_cost = 4\npg_port = 1\nauthn_timeout_ms = 100\nlockout_max_failures = 0', 'f');
    expect([low.poolMax, low.bcryptCost, low.connection.port, low.authnTimeoutMs, low.lockoutMaxFailures]).toEqual([1, 4, 1, 100, 0]);
    const high = parseConfigText('pool_max = 100\nbcrypt_cost = 15\npg_port = 65535\nmap_deadline_ms = 10000', 'f');
    expect([high.poolMax, high.bcryptCost, high.connection.port, high.mapDeadlineMs]).toEqual([100, 15, 65535, 10000]);
    // Leading zeros are still a whole number.
    expect(parseConfigText('pool_max = 007', 'f').poolMax).toBe(7);
  });

  it.each(['plexer', '_x', 'a1_b', 'a'.repeat(63)])('accepts schema %j', (schema) => {
    expect(parseConfigText(`schema = ${schema}`, 'f').schema).toBe(schema);
  });

  it.each(['Plexer', '1abc', 'a-b', 'a b', 'a"b', 'a'.repeat(64), '', 'public;drop', 'é'])('refuses schema %j', (schema) => {
    expect(parseError(`schema = ${schema}`).message).toBe('/etc/p.conf:1 schema: schema must be a lower-case SQL identifier');
  });

  it.each(['debug', 'info', 'warn', 'error'])('accepts log_level %s', (level) => {
    expect(parseConfigText(`log_level = ${level}`, 'f').logLevel).toBe(level);
  });

  it.each(['DEBUG', 'warning', 'trace', '', 'info '.trim() + 'x'])('refuses log_level %j', (level) => {
    expect(parseError(`log_level = ${level}`).message).toBe('/etc/p.conf:1 log_level: log_level must be debug, info, warn or error');
  });

  // Regression test (fixed bug in src/log.ts isLogLevel, `value in levelRank`): the `in` operator also finds Object.prototype's
  // members, so "log_level = toString" (or constructor, __proto__, hasOwnProperty…) is accepted, and
  // setLogLevel('toString') then compares numbers with a function, so no level is ever filtered.
  it.each(['toString', 'constructor', '__proto__', 'hasOwnProperty'])(
    'refuses log_level %j (inherited Object.prototype member)',
    (level) => {
      expect(parseError(`log_level = ${level}`).message).toBe('/etc/p.conf:1 log_level: log_level must be debug, info, warn or error');
    },
  );

  // Regression test (fixed bug in src/config.ts parseConfigText, `settings[key]` on a plain object literal): a key naming an
  // Object.prototype member is looked up on the prototype. "toString = 1" and "constructor = 1" are silently
  // accepted (the inherited function is called as a setter and does nothing); "__proto__ = 1" and
  // "hasOwnProperty = 1" crash with a TypeError instead of the ConfigError naming file, line and key.
  it.each(['toString', 'constructor', '__proto__', 'hasOwnProperty', 'valueOf'])(
    'refuses the setting key %j as unknown, with file and line',
    (key) => {
      expect(parseError(`${key} = 1`).message).toMatch(new RegExp(`^/etc/p\\.conf:1: unknown setting "${key}"`));
    },
  );
});

// Each file key, the field it sets and the values it accepts: the writer's round trip is checked against this
// table, written from apache/REFERENCE.md's, not derived from the parser.
const text = fc.string({ unit: 'grapheme', maxLength: 40 }).filter((v) => v === v.trim() && !/[\r\n]/.test(v));
const field: Record<ConfigKey, [(c: PlexerConfig) => unknown, fc.Arbitrary<string | number>]> = {
  database_url: [(c) => c.connection.connectionString, text],
  pg_host: [(c) => c.connection.host, text],
  pg_port: [(c) => c.connection.port, fc.integer({ min: 1, max: 65535 })],
  pg_database: [(c) => c.connection.database, text],
  pg_user: [(c) => c.connection.user, text],
  pg_password: [(c) => c.connection.password, text],
  pg_passfile: [(c) => c.connection.passfile, text],
  admin_pg_user: [(c) => c.admin.user, text],
  admin_pg_passfile: [(c) => c.admin.passfile, text],
  schema: [(c) => c.schema, fc.stringMatching(/^[a-z_][a-z0-9_]{0,62}$/)],
  pool_max: [(c) => c.poolMax, fc.integer({ min: 1, max: 100 })],
  cache_max: [(c) => c.cacheMax, fc.integer({ min: 1, max: 50_000_000 })],
  cache_ttl_ms: [(c) => c.cacheTtlMs, fc.integer({ min: 1, max: 86_400_000 })],
  map_deadline_ms: [(c) => c.mapDeadlineMs, fc.integer({ min: 1, max: 10_000 })],
  authn_timeout_ms: [(c) => c.authnTimeoutMs, fc.integer({ min: 100, max: 60_000 })],
  bcrypt_cost: [(c) => c.bcryptCost, fc.integer({ min: 4, max: 15 })],
  lockout_max_failures: [(c) => c.lockoutMaxFailures, fc.integer({ min: 0, max: 1_000_000 })],
  lockout_window_seconds: [(c) => c.lockoutWindowSeconds, fc.integer({ min: 1, max: 86_400 * 30 })],
  lockout_seconds: [(c) => c.lockoutSeconds, fc.integer({ min: 1, max: 86_400 * 30 })],
  log_level: [(c) => c.logLevel, fc.constantFrom('debug', 'info', 'warn', 'error')],
};
const anyValues: fc.Arbitrary<ConfigValues> = fc.record(
  Object.fromEntries(CONFIG_KEYS.map((key) => [key, field[key][1]])) as Record<ConfigKey, fc.Arbitrary<string | number>>,
  { requiredKeys: [] },
);

// The table operators read (apache/REFERENCE.md, "Configuration"): every key the parser takes and no other, and each
// key's default as the parser has it, wherever the table gives one literally (a number or a word; "—" and another
// key's name are not literal).
describe('apache/REFERENCE.md, "Configuration"', () => {
  const doc = readFileSync(new URL('../../apache/REFERENCE.md', import.meta.url), 'utf8');
  const start = doc.indexOf('\n## Configuration\n');
  const section = doc.slice(start, doc.indexOf('\n## ', start + 1));
  const rows = [...section.matchAll(/^\| (`[a-z_]+`(?:, `[a-z_]+`)*) \| ([^|]*) \|/gm)].map((m) => ({
    keys: [...m[1]!.matchAll(/`([a-z_]+)`/g)].map((k) => k[1]! as ConfigKey),
    byDefault: m[2]!.trim(),
  }));

  it('lists every key of the config file, and no other', () => {
    expect(start).toBeGreaterThan(-1);
    expect(rows.flatMap((row) => row.keys).sort()).toEqual([...CONFIG_KEYS].sort());
  });

  it("gives each key's default as the parser has it", () => {
    let checked = 0;
    for (const { keys, byDefault } of rows) {
      const literal = /^(\d+|`[a-z]+`)$/.exec(byDefault)?.[1]?.replace(/`/g, '');
      if (keys.length !== 1 || literal === undefined || (CONFIG_KEYS as readonly string[]).includes(literal)) continue;
      const key = keys[0]!;
      expect(String(field[key][0](defaultConfig())), key).toBe(literal);
      checked++;
    }
    expect(checked).toBeGreaterThanOrEqual(10);
  });
});

describe('formatConfig', () => {
  it('writes a file the parser reads back as exactly the values given, comment lines skipped', () => {
    fc.assert(
      fc.property(anyValues, fc.string({ maxLength: 60 }), (values, comment) => {
        const config = parseConfigText(formatConfig(values, comment), 'f');
        for (const key of CONFIG_KEYS) {
          const expected = values[key] ?? field[key][0](defaultConfig());
          expect(field[key][0](config), key).toBe(expected);
        }
      }),
      { numRuns: 300 },
    );
  });

  it('one `key = value` line per value given, in order, after the comment', () => {
    expect(formatConfig({ pg_host: '/run/pg', pg_port: 5433, log_level: 'warn' }, 'Written by a test.\nSecond line.')).toBe(
      '# Written by a test.\n# Second line.\npg_host = /run/pg\npg_port = 5433\nlog_level = warn\n',
    );
    expect(formatConfig({})).toBe('\n');
  });

  it.each([
    [{ pg_password: 'a\nb' }, 'pg_password: a value with a line break or blanks at either end cannot be written to a config file'],
    [{ pg_password: 'a\rb' }, 'pg_password: a value with a line break or blanks at either end cannot be written to a config file'],
    [{ pg_password: ' secret' }, 'pg_password: a value with a line break or blanks at either end cannot be written to a config file'],
    [{ pg_port: 70000 }, 'the config being written:1 pg_port: 70000 is outside 1..65535'],
    [{ schema: 'Bad' }, 'the config being written:1 schema: schema must be a lower-case SQL identifier'],
  ] as [ConfigValues, string][])('refuses %j, the parser would read it otherwise or not at all', (values, message) => {
    expect(() => formatConfig(values)).toThrow(new ConfigError(message));
  });
});

describe('loadConfig', () => {
  const fileText = [
    'database_url = postgresql://file@filehost/filedb',
    'pg_host = filehost',
    'pg_port = 5001',
    'pg_database = filedb',
    'pg_user = fileuser',
    'pg_password = filepw',
    'pg_passfile = /file/pgpass',
    'pool_max = 5',
  ].join('\n');

  it('file settings over defaults', () => {
    const path = tempFile('pool_max = 5\npg_host = filehost\n');
    const config = loadConfig({ path, env: {} });
    expect(config).toEqual({ ...defaultConfig(), poolMax: 5, connection: { host: 'filehost' }, source: path });
  });

  it("PG* variables over the file, and a PG* connection variable drops the file's database_url", () => {
    const path = tempFile(fileText);
    const config = loadConfig({
      path,
      env: { PGHOST: 'envhost', PGPORT: '5002', PGDATABASE: 'envdb', PGUSER: 'envuser', PGPASSWORD: 'envpw', PGPASSFILE: '/env/pgpass' },
    });
    expect(config.connection).toEqual({
      host: 'envhost',
      port: 5002,
      database: 'envdb',
      user: 'envuser',
      password: 'envpw',
      passfile: '/env/pgpass',
    });
    expect(config.poolMax).toBe(5);
    expect(config.source).toBe(path);
  });

  it('a single PG* variable overrides only its own field', () => {
    const path = tempFile(fileText);
    const config = loadConfig({ path, env: { PGPORT: '5003' } });
    expect(config.connection).toEqual({
      host: 'filehost',
      port: 5003,
      database: 'filedb',
      user: 'fileuser',
      password: 'filepw',
      passfile: '/file/pgpass',
    });
  });

  it('PLEXER_DATABASE_URL over everything', () => {
    const path = tempFile(fileText);
    const config = loadConfig({
      path,
      env: { PGHOST: 'envhost', PGUSER: 'envuser', PLEXER_DATABASE_URL: 'postgresql://url@urlhost/urldb' },
    });
    expect(config.connection.connectionString).toBe('postgresql://url@urlhost/urldb');
    expect(config.connection.host).toBe('envhost');
  });

  it("PLEXER_DATABASE_URL replaces the file's database_url", () => {
    const path = tempFile('database_url = postgresql://file@filehost/filedb\n');
    const config = loadConfig({ path, env: { PLEXER_DATABASE_URL: 'postgresql://url@urlhost/urldb' } });
    expect(config.connection).toEqual({ connectionString: 'postgresql://url@urlhost/urldb' });
  });

  it('empty environment variables are ignored', () => {
    const path = tempFile(fileText);
    const config = loadConfig({ path, env: { PGHOST: '', PGPORT: '', PLEXER_DATABASE_URL: '' } });
    expect(config.connection.host).toBe('filehost');
    expect(config.connection.port).toBe(5001);
    expect(config.connection.connectionString).toBe('postgresql://file@filehost/filedb');
  });

  it('refuses a bad PGPORT', () => {
    const path = tempFile('');
    expect(() => loadConfig({ path, env: { PGPORT: 'abc' } })).toThrow('PGPORT: expected a whole number, got "abc"');
    expect(() => loadConfig({ path, env: { PGPORT: '70000' } })).toThrow('PGPORT: 70000 is outside 1..65535');
  });

  it('without a file, the environment alone is enough when the default file is missing', () => {
    expect(DEFAULT_CONFIG_PATH).toBe('/etc/plexer/plexer.conf');
    // Not the host's /etc (a server with plexer installed has one): a default path that does not exist.
    const defaultPath = join(mkdtempSync(join(tmpdir(), 'plexer-config-test-')), 'absent.conf');
    const config = loadConfig({ env: { PGHOST: 'envhost' }, defaultPath });
    expect(config).toEqual({ ...defaultConfig(), connection: { host: 'envhost' } });
    expect(config.source).toBe('built-in defaults');
  });

  it('a missing explicit file is an error naming it', () => {
    const missing = join(mkdtempSync(join(tmpdir(), 'plexer-config-test-')), 'nope.conf');
    expect(() => loadConfig({ path: missing, env: {} })).toThrow(ConfigError);
    expect(() => loadConfig({ path: missing, env: {} })).toThrow(`cannot read config file ${missing}: `);
  });

  it('PLEXER_CONFIG picks the file, and a missing one is an error', () => {
    const path = tempFile('pool_max = 8\n');
    expect(loadConfig({ env: { PLEXER_CONFIG: path } }).poolMax).toBe(8);
    expect(loadConfig({ env: { PLEXER_CONFIG: path } }).source).toBe(path);
    const missing = path + '.missing';
    expect(() => loadConfig({ env: { PLEXER_CONFIG: missing } })).toThrow(`cannot read config file ${missing}`);
  });

  it('an explicit path wins over PLEXER_CONFIG', () => {
    const chosen = tempFile('pool_max = 3\n');
    const other = tempFile('pool_max = 9\n');
    expect(loadConfig({ path: chosen, env: { PLEXER_CONFIG: other } }).poolMax).toBe(3);
  });

  it('a directory as the config file is an error', () => {
    const dir = mkdtempSync(join(tmpdir(), 'plexer-config-test-'));
    expect(() => loadConfig({ path: dir, env: {} })).toThrow(`cannot read config file ${dir}`);
  });

  it('an error in the file names the file and line', () => {
    const path = tempFile('pool_max = 2\nbogus = 1\n');
    expect(() => loadConfig({ path, env: {} })).toThrow(`${path}:2: unknown setting "bogus"`);
  });
});

// The helpers connect with pg_* (a read-only role); the admin commands with admin_pg_* in their place.
describe('adminConfig', () => {
  const base = [
    'pg_host = /run/postgresql',
    'pg_port = 5433',
    'pg_database = plexer',
    'pg_user = plexer_helper',
    'pg_password = helper-pw',
    'pg_passfile = /etc/plexer/helper.pgpass',
  ];

  it("without admin_pg_user the admin commands use the helpers' connection unchanged", () => {
    const config = parseConfigText(base.join('\n'), 'f');
    expect(adminConfig(config)).toBe(config);
  });

  it("admin_pg_user replaces the user and drops the helpers' password and passfile", () => {
    const config = parseConfigText([...base, 'admin_pg_user = plexer_admin', 'admin_pg_passfile = /root/plexer.pgpass'].join('\n'), 'f');
    expect(adminConfig(config).connection).toEqual({
      host: '/run/postgresql',
      port: 5433,
      database: 'plexer',
      user: 'plexer_admin',
      passfile: '/root/plexer.pgpass',
    });
    // The helpers' view is untouched.
    expect(config.connection.user).toBe('plexer_helper');
    expect(config.connection.password).toBe('helper-pw');
  });

  it('peer authentication: admin_pg_user alone, no password or passfile at all', () => {
    const config = parseConfigText(
      ['pg_host = /run/postgresql', 'pg_user = plexer_helper', 'admin_pg_user = plexer_admin'].join('\n'),
      'f',
    );
    expect(adminConfig(config).connection).toEqual({ host: '/run/postgresql', user: 'plexer_admin' });
  });

  it('takes the user and password out of database_url so that admin_pg_user applies', () => {
    const config = parseConfigText(
      ['database_url = postgresql://helper:secret@db:5432/plexer?sslmode=require&user=x&password=y', 'admin_pg_user = plexer_admin'].join(
        '\n',
      ),
      'f',
    );
    expect(adminConfig(config).connection).toEqual({
      connectionString: 'postgresql://db:5432/plexer?sslmode=require',
      user: 'plexer_admin',
    });
    const socket = parseConfigText('database_url = postgresql://helper@/plexer?host=/run/postgresql\nadmin_pg_user = a', 'f');
    expect(adminConfig(socket).connection.connectionString).toBe('postgresql:///plexer?host=%2Frun%2Fpostgresql');
  });

  it('PGUSER or PLEXER_DATABASE_URL name the user for every command, admin ones included; PGPASSFILE the passfile', () => {
    const path = tempFile([...base, 'admin_pg_user = plexer_admin', 'admin_pg_passfile = /root/plexer.pgpass'].join('\n'));
    expect(adminConfig(loadConfig({ path, env: { PGUSER: 'me' } })).connection.user).toBe('me');
    expect(adminConfig(loadConfig({ path, env: { PGPASSFILE: '/me/.pgpass' } })).connection).toMatchObject({
      user: 'plexer_admin',
      passfile: '/me/.pgpass',
    });
    const url = adminConfig(loadConfig({ path, env: { PLEXER_DATABASE_URL: 'postgresql://me@h/d' } })).connection;
    expect(url.connectionString).toBe('postgresql://me@h/d');
    expect(url.user).toBe('plexer_helper'); // pg lets the URL's user win
    expect(adminConfig(loadConfig({ path, env: { PGHOST: '/tmp' } })).connection).toMatchObject({ host: '/tmp', user: 'plexer_admin' });
  });
});
