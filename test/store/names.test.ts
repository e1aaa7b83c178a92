// What a valid name is: src/names.ts and the CHECK constraints in the schema must agree exactly, and the
// htpasswd import and password helpers built on them.
import bcrypt from 'bcryptjs';
import { execFileSync } from 'node:child_process';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { parseHtpasswd } from '../../src/htpasswd.js';
import { isBackend, isAccountName, isRoleName, isRunAs, isSettingsModule, isUserName } from '../../src/names.js';
import {
  MAX_PASSWORD_BYTES,
  PasswordPolicyError,
  bcryptCost,
  checkNewPassword,
  dummyHash,
  isBcryptHash,
  isStorableHash,
  refusalNeedsPadding,
  verifyPassword,
} from '../../src/password.js';
import { freshStore, type TestStore } from '../helpers/plexer.js';

const HASH = '$2b$04$d1zKlBqgH3WPlpi6R00EK./eQ5KVv/iKwy/jCb7F38jm4Vw85UHNu'; // bcrypt('secret', 4)

// Candidates that every kind is tried with, then kind-specific ones.
const COMMON = [
  '',
  ' ',
  'a',
  'A',
  '0',
  '_',
  '-',
  '.',
  'alice',
  'Alice',
  'alice ',
  ' alice',
  'al ice',
  'alice\n',
  '\nalice',
  'alice\r',
  'al\tice',
  'alice\u0000',
  'ali\u0000ce',
  'élise',
  'ålice',
  'alice\u00e9',
  'али',
  '日本',
  'alice\u200b',
  '-alice',
  'alice-',
  '.alice',
  'alice.',
  "o'brien",
  'o"brien',
  'a`b',
  'a;b',
  'a/b',
  'a\\b',
  'a|b',
  'a:b',
  'a$b',
  'a%b',
  'a@b',
  'a+b',
  'a_b',
  'a-b',
  'a.b',
  'a..b',
  'NULL',
  'null',
  'a b',
  '\u00a0a',
  'K',
  'ß',
];

const CANDIDATES = {
  user: [
    ...COMMON,
    'alice@example.org',
    'first.last+tag@example.org',
    '9lives',
    '@alice',
    '+alice',
    '_alice',
    'alice_',
    'a'.repeat(127),
    'a'.repeat(128),
    'a'.repeat(129),
    'A' + '.'.repeat(127),
    'A' + '.'.repeat(128),
  ],
  group: [
    ...COMMON,
    'tenant1',
    'tenant-1',
    'tenant_1',
    'Tenant1',
    '1tenant',
    '_tenant',
    'tenant.1',
    'a'.repeat(63),
    'a'.repeat(64),
    'z' + '9'.repeat(62),
    'z' + '9'.repeat(63),
    't-',
    't_',
    // The keywords of user --group.
    'auto',
    'none',
    'autos',
    'nones',
  ],
  role: [
    ...COMMON,
    'admin',
    'Admin',
    'staff.read',
    'staff-read',
    'staff_read',
    '9',
    'a'.repeat(64),
    'a'.repeat(65),
    '_admin',
    'admin@x',
    'admin+x',
  ],
  settingsModule: [
    ...COMMON,
    'tenants.settings.tenant1',
    'tenants.settings',
    '_private',
    'Tenants.Settings_1',
    '1tenants',
    'tenants.1settings',
    'tenants..settings',
    'tenants.settings.',
    '.tenants',
    'tenants-settings',
    'tenants settings',
    Array.from({ length: 16 }, (_, i) => `m${i}`).join('.'),
    Array.from({ length: 17 }, (_, i) => `m${i}`).join('.'),
    'x'.repeat(300),
    'a.b\n',
    'tenants.settings.tenant1\n',
  ],
  backend: [
    ...COMMON,
    'http://127.0.0.1:8001/',
    'https://backend.internal/',
    'http://127.0.0.1:8001',
    'fcgi://localhost/',
    'uwsgi://127.0.0.1:3031/',
    'scgi://127.0.0.1:4000/',
    'unix:/run/app.sock|fcgi://localhost/',
    'unix:/x|fcgi://localhost/',
    'unix:/run/app.sock|http://localhost/',
    'unix:/|fcgi://localhost/',
    'unix:run/app.sock|fcgi://localhost/',
    'unix:/run/app sock|fcgi://localhost/',
    'unix:/run/app.sock',
    'ftp://host/',
    'HTTP://host/',
    'http://',
    'http:///',
    'http://[::1]:8001/',
    'http://host/path/to/app',
    'http://host/a%20b',
    'http://host/~user/',
    'http://host/a?b',
    'http://host/a#b',
    'http://host/a b',
    'http://host/"x"',
    "http://host/'x'",
    'http://host/$1',
    'http://user@host/',
    'http://host/\n',
    'http://host/\r',
    'http://' + 'h'.repeat(255) + '/',
    'http://' + 'h'.repeat(256) + '/',
    'unix:/' + 'p'.repeat(200) + '|fcgi://localhost/',
    'unix:/' + 'p'.repeat(201) + '|fcgi://localhost/',
    'http://host/é',
    'http://hôst/',
    ' http://host/',
    'http://host/ ',
    'http://host/a|b',
    'http://host:8001/a/b.c-d_e~f/',
  ],
  runAs: [
    ...COMMON,
    'plexer-alpha',
    'plexer-alpha:plexer-alpha',
    'tenant1:tenants',
    '_svc',
    'svc_',
    'a:b',
    'a:',
    ':a',
    'a::b',
    'a:b:c',
    'Alice',
    'alice:Staff',
    'alice$',
    '1alice',
    'alice:1staff',
    'a'.repeat(32),
    'a'.repeat(33),
    `${'a'.repeat(32)}:${'b'.repeat(32)}`,
    `${'a'.repeat(32)}:${'b'.repeat(33)}`,
    'alice:',
    'alice:-x',
    'alice :x',
    'alice:x\n',
    'www-data',
    'root',
    'root:root',
    'a.b',
    'a@b:c',
  ],
};

const TS_CHECK: Record<keyof typeof CANDIDATES, (value: string) => boolean> = {
  user: isUserName,
  group: isAccountName,
  role: isRoleName,
  settingsModule: isSettingsModule,
  backend: isBackend,
  runAs: isRunAs,
};

// One statement per kind, in a transaction rolled back after each candidate.
const INSERT: Record<keyof typeof CANDIDATES, { text: string; params: (value: string) => unknown[] }> = {
  user: { text: 'INSERT INTO users (name, password_hash) VALUES ($1, $2)', params: (v) => [v, HASH] },
  group: { text: 'INSERT INTO daemon_groups (name) VALUES ($1)', params: (v) => [v] },
  role: { text: "INSERT INTO user_roles (user_name, role) VALUES ('owner', $1)", params: (v) => [v] },
  settingsModule: {
    text: "INSERT INTO daemon_groups (name, settings_module) VALUES ('probe', $1)",
    params: (v) => [v],
  },
  backend: { text: "INSERT INTO daemon_groups (name, backend) VALUES ('probe', $1)", params: (v) => [v] },
  runAs: { text: "INSERT INTO daemon_groups (name, run_as) VALUES ('probe', $1)", params: (v) => [v] },
};

let store: TestStore;

beforeAll(async () => {
  store = await freshStore();
  await store.sql.query("INSERT INTO users (name, password_hash) VALUES ('owner', $1)", [HASH]);
});

afterAll(() => store?.close());

interface Verdict {
  value: string;
  ts: boolean;
  sql: boolean;
  sqlError?: string;
}

async function sqlAccepts(kind: keyof typeof CANDIDATES, value: string): Promise<{ ok: boolean; error?: string }> {
  const client = await store.sql.connect();
  try {
    await client.query('BEGIN');
    try {
      await client.query(INSERT[kind].text, INSERT[kind].params(value));
      return { ok: true };
    } catch (error) {
      const e = error as { code?: string; constraint?: string; message: string };
      return { ok: false, error: `${e.code} ${e.constraint ?? ''} ${e.message}` };
    } finally {
      await client.query('ROLLBACK');
    }
  } finally {
    client.release();
  }
}

describe('names: TypeScript patterns and SQL CHECK constraints agree', () => {
  for (const kind of Object.keys(CANDIDATES) as Array<keyof typeof CANDIDATES>) {
    it(`${kind}: ${CANDIDATES[kind].length} candidates`, async () => {
      const verdicts: Verdict[] = [];
      for (const value of new Set(CANDIDATES[kind])) {
        const sql = await sqlAccepts(kind, value);
        verdicts.push({ value, ts: TS_CHECK[kind](value), sql: sql.ok, ...(sql.error ? { sqlError: sql.error } : {}) });
      }
      const disagreements = verdicts.filter((v) => v.ts !== v.sql);
      expect(disagreements).toEqual([]);
      // Every SQL refusal is the named CHECK constraint, except text PostgreSQL cannot store at all (NUL).
      const constraint = {
        user: 'user_name_valid',
        group: 'daemon_group_name_valid',
        role: 'role_name_valid',
        settingsModule: 'settings_module_valid',
        backend: 'backend_valid',
        runAs: 'run_as_valid',
      }[kind];
      for (const v of verdicts.filter((x) => !x.sql)) {
        if (v.value.includes('\u0000')) expect(v.sqlError).toMatch(/^22021 /);
        else expect(v.sqlError).toMatch(new RegExp(`^23514 ${constraint} `));
      }
      // The list exercises both sides.
      expect(verdicts.filter((v) => v.ts).length).toBeGreaterThan(3);
      expect(verdicts.filter((v) => !v.ts).length).toBeGreaterThan(10);
    });
  }

  it('spot checks of the TypeScript side', () => {
    expect(isUserName('a'.repeat(128))).toBe(true);
    expect(isUserName('a'.repeat(129))).toBe(false);
    expect(isUserName('alice\n')).toBe(false);
    expect(isUserName('-alice')).toBe(false);
    expect(isUserName('alice@example.org')).toBe(true);
    expect(isAccountName('a'.repeat(63))).toBe(true);
    expect(isAccountName('a'.repeat(64))).toBe(false);
    expect(isAccountName('Tenant1')).toBe(false);
    expect(isRoleName('a'.repeat(64))).toBe(true);
    expect(isRoleName('a'.repeat(65))).toBe(false);
    expect(isSettingsModule('tenants.settings.tenant1')).toBe(true);
    expect(isSettingsModule('tenants..settings')).toBe(false);
    expect(isBackend('unix:/x|fcgi://localhost/')).toBe(true);
    expect(isBackend('http://host/"x"')).toBe(false);
    expect(isBackend('http://host/a b')).toBe(false);
    expect(isRunAs('plexer-alpha')).toBe(true);
    expect(isRunAs('plexer-alpha:tenants')).toBe(true);
    expect(isRunAs('a'.repeat(33))).toBe(false);
    expect(isRunAs('alice:')).toBe(false);
    expect(isRunAs('Alice')).toBe(false);
  });

  it('no two daemon groups share a run-as user, whatever their groups', async () => {
    const client = await store.sql.connect();
    try {
      await client.query('BEGIN');
      await client.query("INSERT INTO daemon_groups (name, run_as) VALUES ('one', 'tenant-x'), ('two', NULL), ('three', NULL)");
      const error = await client.query("INSERT INTO daemon_groups (name, run_as) VALUES ('four', 'tenant-x:other')").catch((e) => e);
      expect(error).toMatchObject({ code: '23505', constraint: 'daemon_groups_run_as_user_unique' });
    } finally {
      await client.query('ROLLBACK');
      client.release();
    }
  });
});

describe('parseHtpasswd', () => {
  const y = HASH.replace('$2b$', '$2y$');
  const a = HASH.replace('$2b$', '$2a$');

  it('imports bcrypt entries ($2y$, $2a$, $2b$) with their line numbers, skipping comments and blank lines', () => {
    const text = `# exported from Apache\nalice:${y}\n\nbob:${a}\r\ncarol:${HASH}\n`;
    expect(parseHtpasswd(text)).toEqual({
      entries: [
        { line: 2, user: 'alice', hash: y },
        { line: 4, user: 'bob', hash: a },
        { line: 5, user: 'carol', hash: HASH },
      ],
      rejected: [],
    });
  });

  it('refuses crypt(), plain and unknown hashes, bad names, duplicates and malformed lines, each with its line number', () => {
    const text = [
      'md5:$apr1$abcdefgh$0123456789abcdefghijk', // 1
      'sha:{SHA}W6ph5Mm5Pz8GgiULbPgzG37mj9g', // 2
      'sha512:$6$salt$hash', // 3
      'des:abJnggxhB/yWI', // 4
      'plain:secret', // 5
      `-bad:${HASH}`, // 6
      `ok:${HASH}`, // 7
      `ok:${HASH}`, // 8
      'no colon here', // 9
      `:${HASH}`, // 10
      'short:$2y$04$tooShort', // 11
      `bad name:${HASH}`, // 12
      '', // 13
    ].join('\n');
    const result = parseHtpasswd(text);
    expect(result.entries).toEqual([{ line: 7, user: 'ok', hash: HASH }]);
    expect(result.rejected).toEqual([
      { line: 1, user: 'md5', reason: 'malformed MD5 ($apr1$) hash' },
      { line: 2, user: 'sha', reason: 'malformed SHA-1 ({SHA}) hash' },
      { line: 3, user: 'sha512', reason: 'crypt() hash: not imported; set a new password with plexer user passwd' },
      { line: 4, user: 'des', reason: 'DES crypt() hash: not imported (weak); set a new password with plexer user passwd' },
      { line: 5, user: 'plain', reason: 'plain text or unknown hash format: not imported' },
      { line: 6, user: null, reason: 'invalid user name' },
      { line: 8, user: 'ok', reason: 'duplicate user name' },
      { line: 9, user: null, reason: 'not a "user:hash" line' },
      { line: 10, user: null, reason: 'not a "user:hash" line' },
      { line: 11, user: 'short', reason: 'malformed bcrypt hash' },
      { line: 12, user: null, reason: 'invalid user name' },
    ]);
  });

  it('imports htpasswd MD5 ($apr1$) and SHA-1 ({SHA}) entries as they are', () => {
    const md5 = '$apr1$abcdefgh$0123456789abcdefghijkl';
    const sha = '{SHA}W6ph5Mm5Pz8GgiULbPgzG37mj9g=';
    expect(parseHtpasswd(`m:${md5}\ns:${sha}\n`)).toEqual({
      entries: [
        { line: 1, user: 'm', hash: md5 },
        { line: 2, user: 's', hash: sha },
      ],
      rejected: [],
    });
  });

  it('an empty file imports nothing', () => {
    expect(parseHtpasswd('')).toEqual({ entries: [], rejected: [] });
  });
});

describe('passwords', () => {
  it('verifyPassword accepts the right password for $2b$, $2y$ and $2a$ hashes and refuses others', async () => {
    expect(await verifyPassword('secret', HASH)).toBe(true);
    expect(await verifyPassword('secret', HASH.replace('$2b$', '$2y$'))).toBe(true);
    expect(await verifyPassword('secret', HASH.replace('$2b$', '$2a$'))).toBe(true);
    expect(await verifyPassword('Secret', HASH)).toBe(false);
    expect(await verifyPassword('secret ', HASH)).toBe(false);
    expect(await verifyPassword('', HASH)).toBe(false);
  });

  it('verifyPassword refuses a malformed hash without throwing', async () => {
    expect(await verifyPassword('secret', 'secret')).toBe(false);
    expect(await verifyPassword('secret', HASH.slice(0, -1))).toBe(false);
    expect(await verifyPassword('secret', '$apr1$abcdefgh$0123456789abcdefghijkl')).toBe(false);
    expect(await verifyPassword('secret', '$apr1$abcdefgh$')).toBe(false);
  });

  it('verifyPassword checks htpasswd $apr1$ and {SHA} hashes (as made by htpasswd -m and -s)', async () => {
    const md5 = execFileSync('htpasswd', ['-nbm', 'alice', 'secret'], { encoding: 'utf8' }).trim().split(':')[1]!;
    const sha = execFileSync('htpasswd', ['-nbs', 'alice', 'secret'], { encoding: 'utf8' }).trim().split(':')[1]!;
    expect(md5).toMatch(/^\$apr1\$/);
    expect(sha).toBe('{SHA}5en6G6MezRroT3XKqkdPOmY/BfQ=');
    for (const hash of [md5, sha]) {
      expect(await verifyPassword('secret', hash)).toBe(true);
      expect(await verifyPassword('Secret', hash)).toBe(false);
      expect(await verifyPassword('', hash)).toBe(false);
      expect(refusalNeedsPadding(hash, 4)).toBe(true);
    }
  });

  it('verifyPassword refuses passwords over 72 bytes even when bcrypt would match their first 72', async () => {
    const p72 = 'a'.repeat(72);
    const hash = await bcrypt.hash(p72, 4);
    expect(await verifyPassword(p72, hash)).toBe(true);
    // bcrypt itself truncates, so it would say yes.
    expect(await bcrypt.compare(p72 + 'b', hash)).toBe(true);
    expect(await verifyPassword(p72 + 'b', hash)).toBe(false);
    // Bytes, not characters: 36 two-byte characters are 72 bytes, 37 are 74.
    const e36 = 'é'.repeat(36);
    expect(await verifyPassword(e36, await bcrypt.hash(e36, 4))).toBe(true);
    const e37 = 'é'.repeat(37);
    expect(await verifyPassword(e37, await bcrypt.hash(e37, 4))).toBe(false);
  });

  it('checkNewPassword refuses empty, over-long and newline/NUL passwords', () => {
    expect(MAX_PASSWORD_BYTES).toBe(72);
    expect(() => checkNewPassword('')).toThrow(new PasswordPolicyError('the password is empty'));
    expect(() => checkNewPassword('a'.repeat(73))).toThrow(PasswordPolicyError);
    expect(() => checkNewPassword('é'.repeat(37))).toThrow('the password is longer than 72 bytes, which bcrypt cannot use');
    expect(() => checkNewPassword('a\nb')).toThrow('the password holds a newline or NUL byte');
    expect(() => checkNewPassword('a\rb')).toThrow('the password holds a newline or NUL byte');
    expect(() => checkNewPassword('a\0b')).toThrow('the password holds a newline or NUL byte');
    expect(() => checkNewPassword('a'.repeat(72))).not.toThrow();
    expect(() => checkNewPassword('é'.repeat(36))).not.toThrow();
  });

  it.each([4, 5, 10, 12, 15])('dummyHash(%i) is a well-formed bcrypt hash of that cost that verifies nothing', async (cost) => {
    const hash = dummyHash(cost);
    expect(isBcryptHash(hash)).toBe(true);
    expect(bcryptCost(hash)).toBe(cost);
    expect(bcrypt.getRounds(hash)).toBe(cost);
    expect(hash).toMatch(/^\$2b\$\d\d\$/);
    expect(hash).toHaveLength(60);
  });

  it('dummyHash verifies no password (checked at cost 4 so bcrypt runs quickly)', async () => {
    const hash = dummyHash(4);
    for (const password of ['', 'secret', 'password', 'CCCCCCCC', 'a'.repeat(72), 'admin']) {
      expect(await verifyPassword(password, hash)).toBe(false);
    }
    // bcrypt accepts it as a hash (no throw) and really computes with it.
    await expect(bcrypt.compare('secret', hash)).resolves.toBe(false);
  });

  it('the schema accepts exactly the hashes isStorableHash accepts', async () => {
    const candidates = [
      HASH,
      HASH.replace('$2b$', '$2y$'),
      HASH.replace('$2b$', '$2a$'),
      HASH.replace('$2b$', '$2x$'),
      HASH.replace('$04$', '$03$'),
      HASH.replace('$04$', '$31$'),
      HASH.replace('$04$', '$32$'),
      HASH + 'x',
      HASH.slice(0, -1),
      HASH + '\n',
      dummyHash(10),
      '$apr1$abcdefgh$0123456789abcdefghijkl',
      '$apr1$a$0123456789abcdefghijkl',
      '$apr1$abcdefghi$0123456789abcdefghijkl',
      '$apr1$abcdefgh$0123456789abcdefghijk',
      '{SHA}W6ph5Mm5Pz8GgiULbPgzG37mj9g=',
      '{SHA}W6ph5Mm5Pz8GgiULbPgzG37mj9g',
      '{sha}W6ph5Mm5Pz8GgiULbPgzG37mj9g=',
      'secret',
      '',
    ];
    const disagreements: Array<[string, boolean, boolean]> = [];
    for (const [i, hash] of candidates.entries()) {
      const client = await store.sql.connect();
      let ok = true;
      try {
        await client.query('BEGIN');
        await client.query('INSERT INTO users (name, password_hash) VALUES ($1, $2)', [`h${i}`, hash]);
      } catch {
        ok = false;
      } finally {
        await client.query('ROLLBACK');
        client.release();
      }
      if (ok !== isStorableHash(hash)) disagreements.push([hash, ok, isStorableHash(hash)]);
    }
    expect(disagreements).toEqual([]);
  });
});
