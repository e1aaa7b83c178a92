import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import fc from 'fast-check';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { USER_NAME_PATTERN } from '../src/names.js';
import { RESYNC_KEY } from '../src/protocol/rewrite-map.js';
import { MapProcess, answerLine, freshStore, runPlexer, waitForAnswer, type TestStore } from './helpers/plexer.js';

let store: TestStore;
const HASH = '$2b$04$d1zKlBqgH3WPlpi6R00EK./eQ5KVv/iKwy/jCb7F38jm4Vw85UHNu'; // bcrypt('secret', 4)

beforeAll(async () => {
  store = await freshStore();
  await store.sql.query(`INSERT INTO daemon_groups (name, settings_module, backend) VALUES
    ('tenant1', 'tenants.settings.tenant1', 'http://127.0.0.1:8001/'), ('tenant2', 'tenants.settings.tenant2', NULL),
    ('closed', 'tenants.settings.closed', NULL)`);
  await store.sql.query(`UPDATE daemon_groups SET enabled = false WHERE name = 'closed'`);
  await store.sql.query(`INSERT INTO users (name, password_hash, daemon_group, disabled) VALUES
    ('alice', $1, 'tenant1', false), ('bob', $1, 'tenant2', false), ('mallory', $1, 'tenant1', true),
    ('nogroup', $1, NULL, false), ('carl', $1, 'closed', false)`, [HASH]);
});

afterAll(() => store.close());

describe('plexer map group', () => {
  it('answers hits, misses, disabled users and users without a usable group', async () => {
    const map = new MapProcess('group', store.configPath);
    expect(await map.askMany(['alice', 'bob', 'nobody', 'mallory', 'nogroup', 'carl', 'alice']))
      .toEqual(['alice=tenant1', 'bob=tenant2', 'nobody=', 'mallory=', 'nogroup=', 'carl=', 'alice=tenant1']);
    expect(await map.close()).toBe(0);
  });

  it('answers invalid keys with no value, echoing them byte for byte, without losing its place', async () => {
    const map = new MapProcess('group', store.configPath);
    const keys = ['', 'al\tice', 'a'.repeat(129), 'ali ce', '-alice', 'alice\r', 'alice'];
    expect(await map.askMany(keys))
      .toEqual(['=', 'al\tice=', `${'a'.repeat(129)}=`, 'ali ce=', '-alice=', 'alice\r=', 'alice=tenant1']);
    // Answer lines are read as latin1: one character per byte, so these compare the bytes themselves.
    map.write(Buffer.from([0x61, 0x6c, 0xff, 0xfe, 0x0a, 0x00, 0x0a, 0x3d, 0x7c, 0x0d, 0x80, 0x0a]));
    expect([await map.nextLine(), await map.nextLine(), await map.nextLine()]).toEqual(['al\u00ff\u00fe=', '\u0000=', '=|\r\u0080=']);
    // An overlong line (over 4096 bytes) is answered NULL, without its key.
    map.write('x'.repeat(3 * 1024 * 1024) + '\nbob\n');
    expect([await map.nextLine(), await map.nextLine()]).toEqual(['NULL', 'bob=tenant2']);
    await map.close();
  });

  it(`reads "${RESYNC_KEY}" and never answers it, nor loses its place`, async () => {
    const map = new MapProcess('group', store.configPath);
    map.write(`alice\n${RESYNC_KEY}\n${RESYNC_KEY}\nbob\n${RESYNC_KEY}\nnobody\n${RESYNC_KEY}\n`);
    expect([await map.nextLine(), await map.nextLine(), await map.nextLine()]).toEqual(['alice=tenant1', 'bob=tenant2', 'nobody=']);
    // Only near misses are keys: each is answered (invalid, so with no value).
    const near = [`${RESYNC_KEY}\r`, ` ${RESYNC_KEY}`, RESYNC_KEY.toUpperCase(), RESYNC_KEY.slice(0, -1)];
    expect(await map.askMany([...near, 'carl', 'alice'])).toEqual([...near.map((k) => `${k}=`), 'carl=', 'alice=tenant1']);
    await new Promise((r) => setTimeout(r, 50));
    expect(map.unreadLines).toBe(0);
    expect(map.stderr.match(/PLX0901/g)).toHaveLength(4);
    expect(await map.close()).toBe(0);
  });

  it('answers many keys written in one chunk, in order', async () => {
    const map = new MapProcess('group', store.configPath);
    const keys = Array.from({ length: 2000 }, (_, i) => (i % 3 === 0 ? 'alice' : i % 3 === 1 ? 'bob' : `ghost${i}`));
    const answers = await map.askMany(keys);
    expect(answers).toEqual(keys.map((k) => `${k}=${k === 'alice' ? 'tenant1' : k === 'bob' ? 'tenant2' : ''}`));
    await map.close();
  });

  it('sees a change made with plain SQL within a second, without restarting', async () => {
    const map = new MapProcess('group', store.configPath);
    expect(await map.ask('bob')).toBe('bob=tenant2');
    expect(await map.ask('dave')).toBe('dave=');
    await new Promise((r) => setTimeout(r, 300)); // let the listener connect
    await store.sql.query(`UPDATE users SET daemon_group = 'tenant1' WHERE name = 'bob'`);
    expect(await waitForAnswer(map, 'bob', 'tenant1')).toBeLessThan(1_000);
    await store.sql.query(`INSERT INTO users (name, password_hash, daemon_group) VALUES ('dave', $1, 'tenant2')`, [HASH]);
    expect(await waitForAnswer(map, 'dave', 'tenant2')).toBeLessThan(1_000);
    await store.sql.query(`UPDATE daemon_groups SET enabled = false WHERE name = 'tenant2'`);
    expect(await waitForAnswer(map, 'dave', '')).toBeLessThan(1_000);
    await store.sql.query(`UPDATE daemon_groups SET enabled = true WHERE name = 'tenant2'`);
    await waitForAnswer(map, 'dave', 'tenant2');
    await store.sql.query(`DELETE FROM users WHERE name = 'dave'`);
    expect(await waitForAnswer(map, 'dave', '')).toBeLessThan(1_000);
    await store.sql.query(`UPDATE users SET daemon_group = 'tenant2' WHERE name = 'bob'`);
    await waitForAnswer(map, 'bob', 'tenant2');
    await map.close();
  });

  it('exits 0 on EOF, even with the last line unterminated, after answering it', async () => {
    const map = new MapProcess('group', store.configPath);
    map.write('alice\nbob');
    const code = map.close();
    expect([await map.nextLine(), await map.nextLine()]).toEqual(['alice=tenant1', 'bob=tenant2']);
    expect(await code).toBe(0);
    expect(map.stderr).not.toMatch(/error/i);
  });
});

describe('plexer map settings and backend', () => {
  it('maps a group to its settings module', async () => {
    const map = new MapProcess('settings', store.configPath);
    expect(await map.askMany(['tenant1', 'tenant2', 'closed', 'nosuch', 'Tenant1', 'alice']))
      .toEqual(['tenant1=tenants.settings.tenant1', 'tenant2=tenants.settings.tenant2', 'closed=', 'nosuch=', 'Tenant1=', 'alice=']);
    await store.sql.query(`UPDATE daemon_groups SET settings_module = 'tenants.settings.other' WHERE name = 'tenant1'`);
    await waitForAnswer(map, 'tenant1', 'tenants.settings.other');
    await store.sql.query(`UPDATE daemon_groups SET settings_module = 'tenants.settings.tenant1' WHERE name = 'tenant1'`);
    await map.close();
  });

  it('maps a user to the backend of their group, no value where the group has none', async () => {
    const map = new MapProcess('backend', store.configPath);
    expect(await map.askMany(['alice', 'bob', 'mallory'])).toEqual(['alice=http://127.0.0.1:8001/', 'bob=', 'mallory=']);
    await map.close();
  });
});

describe('a map that cannot start properly', () => {
  it('answers every line with no value when its config is broken, still skips resync lines, and exits on EOF', async () => {
    const { writeFileSync, mkdtempSync } = await import('node:fs');
    const dir = mkdtempSync('/tmp/plexer-bad-');
    writeFileSync(`${dir}/plexer.conf`, 'pg_port = not-a-number\n');
    const map = new MapProcess('group', `${dir}/plexer.conf`);
    expect(await map.askMany(['alice', 'bob'])).toEqual(['alice=', 'bob=']);
    map.write(`${RESYNC_KEY}\ncarl\n`);
    expect(await map.nextLine()).toBe('carl=');
    expect(await map.close()).toBe(2);
    expect(map.stderr).toMatch(/configuration error.*pg_port/);
  });

  it('rejects an unknown map kind with a usage error', async () => {
    const result = await runPlexer(['map', 'nonsense'], {});
    expect(result.code).toBe(2);
    expect(result.stderr).toMatch(/map group, map settings, map backend/);
  });
});

describe('a map whose reader of stderr is gone', () => {
  it('keeps answering and still exits on EOF, without spinning on failed log writes', async () => {
    const map = new MapProcess('group', store.configPath);
    map.child.stderr.destroy();
    // A resync line is logged (to the closed stderr) and not answered.
    map.write(`${RESYNC_KEY}\n`);
    expect(await map.askMany(['alice', 'bad key', 'bob'])).toEqual(['alice=tenant1', 'bad key=', 'bob=tenant2']);
    const started = Date.now();
    expect(await map.close()).toBe(0);
    expect(Date.now() - started).toBeLessThan(3_000);
  });
});

// A model test of the healing scheme against the real map program. The test plays mod_rewrite and the generated
// rules: one client at a time (the rewrite-map lock) writes "key\n" and reads one line. Some clients die after a
// write and never read, leaving their answer in the shared pipe for the next client. A client that reads an
// answer naming another key sends RESYNC_KEY, reads one line, asks its key again, reads one line, and routes
// only if that answer names its key; otherwise it fails closed. Every read must arrive within 2 s: a read that
// does not is Apache waiting forever under the global lock. The model (the keys whose answers the map still
// owes, oldest first) predicts every line the map writes.
describe('healing a pipe shifted by dying workers (model test against the real map)', () => {
  const LONG = `L${'x'.repeat(126)}9`; // 128 bytes: the longest valid user name
  // name, group, disabled -> the value the map must answer ("" for none)
  const seeded: Array<[string, string | null, boolean, string]> = [
    ['ann', 'm-red', false, 'm-red'],
    ['ben.b', 'm-blue', false, 'm-blue'],
    ['cy@x.org', 'm-red', false, 'm-red'],
    ['D-4', 'm-blue', false, 'm-blue'],
    ['d-4', 'm-red', false, 'm-red'],
    ['h_9+tag', 'm-blue', false, 'm-blue'],
    [LONG, 'm-red', false, 'm-red'],
    ['eve', 'm-red', true, ''], // disabled user
    ['fay', 'm-shut', false, ''], // disabled group
    ['gus', null, false, ''], // no group
  ];
  const expectedValue = new Map(seeded.map(([name, , , value]) => [name, value]));
  const seededNames = seeded.map(([name]) => name);
  // Names of other users in this database (the suites above): never used as unknown names.
  const otherUsers = new Set<string>();
  let configPath: string;
  let confDir: string;
  let map: MapProcess | undefined;

  beforeAll(async () => {
    await store.sql.query(`INSERT INTO daemon_groups (name, settings_module) VALUES
      ('m-red', 'tenants.settings.red'), ('m-blue', 'tenants.settings.blue'), ('m-shut', 'tenants.settings.shut')`);
    await store.sql.query(`UPDATE daemon_groups SET enabled = false WHERE name = 'm-shut'`);
    await store.sql.query(
      `INSERT INTO users (name, password_hash, daemon_group, disabled) SELECT * FROM unnest($1::text[], $2::text[], $3::text[], $4::bool[])`,
      [seededNames, seeded.map(() => HASH), seeded.map(([, group]) => group), seeded.map(([, , disabled]) => disabled)],
    );
    const { rows } = await store.sql.query<{ name: string }>('SELECT name FROM users');
    for (const { name } of rows) if (!expectedValue.has(name)) otherUsers.add(name);
    // A short deadline, well inside the 2 s read timeout: a slow query must come back as an answer (stale or
    // none), never as a read that looks blocked. Known users are warmed into the cache before any run.
    confDir = mkdtempSync(join(tmpdir(), 'plexer-model-'));
    configPath = join(confDir, 'plexer.conf');
    writeFileSync(configPath, `${readFileSync(store.configPath, 'utf8')}map_deadline_ms = 300\n`);
  });

  afterAll(async () => {
    if (map) await map.close();
    rmSync(confDir, { recursive: true, force: true });
  });

  async function startMap(): Promise<MapProcess> {
    const started = new MapProcess('group', configPath);
    for (const name of seededNames) await waitForAnswer(started, name, expectedValue.get(name)!, 15_000);
    // The listener's first connection expires the cache: wait for it, then warm again.
    await new Promise((r) => setTimeout(r, 300));
    for (const name of seededNames) await waitForAnswer(started, name, expectedValue.get(name)!, 15_000);
    return started;
  }

  type Death = 'none' | 'afterKey' | 'afterResync' | 'afterRekey';
  interface Client {
    key: string;
    death: Death;
  }
  interface Outcome {
    died: boolean;
    mismatched: boolean; // its first read named another key
    routed: boolean;
  }

  const keyOf = (line: string): string | null => /^([^=]*)=/.exec(line)?.[1] ?? null;

  // Runs the clients against the map, one at a time, in lock-step with the model `owed` (the keys whose answers
  // the map still owes, oldest first; updated in place); returns each client's outcome.
  async function drive(m: MapProcess, clients: Client[], owed: string[]): Promise<Outcome[]> {
    const write = (key: string) => {
      m.write(`${key}\n`);
      if (key !== RESYNC_KEY) owed.push(key);
    };
    const read = async (asker: string): Promise<string> => {
      let line: string;
      try {
        line = await m.nextLine(2_000);
      } catch {
        throw new Error(`a read by ${JSON.stringify(asker)} blocked for 2 s: Apache would wait forever holding the rewrite-map lock`);
      }
      const due = owed.shift();
      expect(due, `the map wrote a line nobody was owed: ${JSON.stringify(line)}`).toBeDefined();
      expect(line).toBe(answerLine(due!, expectedValue.get(due!) ?? ''));
      return line;
    };
    const route = (key: string, line: string): boolean => {
      if (keyOf(line) !== key) return false;
      // Never another user's answer: the value routed on is this user's own.
      expect(line.slice(key.length + 1), `routing ${key}`).toBe(expectedValue.get(key) ?? '');
      return true;
    };
    const outcomes: Outcome[] = [];
    for (const { key, death } of clients) {
      const outcome: Outcome = { died: false, mismatched: false, routed: false };
      outcomes.push(outcome);
      write(key);
      if (death === 'afterKey') {
        outcome.died = true;
        continue;
      }
      const first = await read(key);
      // Every line the map writes for a valid key names a key; "NULL" (no key) is only for overlong lines.
      expect(keyOf(first)).not.toBeNull();
      if (route(key, first)) {
        outcome.routed = true;
        continue;
      }
      outcome.mismatched = true;
      write(RESYNC_KEY);
      if (death === 'afterResync') {
        outcome.died = true;
        continue;
      }
      await read(RESYNC_KEY);
      write(key);
      if (death === 'afterRekey') {
        outcome.died = true;
        continue;
      }
      outcome.routed = route(key, await read(key));
    }
    return outcomes;
  }

  const unknownName = fc.stringMatching(USER_NAME_PATTERN).filter((name) => !otherUsers.has(name));
  const clientArb: fc.Arbitrary<Client> = fc.record({
    key: fc.oneof({ weight: 5, arbitrary: fc.constantFrom(...seededNames) }, { weight: 2, arbitrary: unknownName }),
    death: fc.oneof(
      { weight: 24, arbitrary: fc.constant<Death>('none') },
      { weight: 3, arbitrary: fc.constant<Death>('afterKey') },
      { weight: 1, arbitrary: fc.constantFrom<Death>('afterResync', 'afterRekey') },
    ),
  });
  // Mostly single clients, sometimes several workers killed in a row (the OOM killer): shifts of more than one.
  const scriptArb = fc
    .array(
      fc.oneof(
        { weight: 12, arbitrary: clientArb.map((c) => [c]) },
        { weight: 1, arbitrary: fc.array(clientArb.map((c): Client => ({ ...c, death: 'afterKey' })), { minLength: 2, maxLength: 5 }) },
      ),
      { minLength: 60, maxLength: 200 },
    )
    .map((segments) => segments.flat());

  it('never routes a client with another user\'s answer, never blocks a read, and heals after at most one mismatch per death', async () => {
    map = await startMap();
    let broken = false;
    const totals = { runs: 0, lookups: 0, deaths: 0, mismatches: 0, healedRoutes: 0, failedClosed: 0 };
    await fc.assert(
      fc.asyncProperty(scriptArb, async (script) => {
        if (broken || !map || map.child.exitCode !== null) {
          // A failed run leaves the pipe in an unknown state: start from a fresh map, as a graceful reload does.
          map?.child.kill('SIGKILL');
          map = await startMap();
        }
        broken = true;
        const m = map;
        const deaths = script.filter((c) => c.death !== 'none').length;
        // After the script, clients that never die, with keys the map owes nothing for (so a stale answer
        // cannot match by chance): enough of them to use up every shift the deaths can have left.
        const owed: string[] = [];
        const outcomes = await drive(m, script, owed);
        const tail: Client[] = [];
        for (let i = 0; i <= deaths; i++) {
          let key = `heal-${i}`;
          while (owed.includes(key) || otherUsers.has(key) || expectedValue.has(key)) key += 'x';
          tail.push({ key, death: 'none' });
        }
        const tailOutcomes = await drive(m, tail, owed);
        outcomes.push(...tailOutcomes);

        const lastDeath = outcomes.map((o) => o.died).lastIndexOf(true);
        const mismatchesAfterLastDeath = outcomes.slice(lastDeath + 1).filter((o) => o.mismatched).length;
        const mismatches = outcomes.filter((o) => o.mismatched).length;
        expect(mismatchesAfterLastDeath).toBeLessThanOrEqual(deaths);
        expect(mismatches).toBeLessThanOrEqual(deaths);
        if (deaths === 0) expect(mismatches).toBe(0);
        // Healed, and stays healed: from the first tail client that routes on its first answer, every one does;
        // the map owes nothing more.
        const healedAt = tailOutcomes.findIndex((o) => !o.mismatched);
        expect(healedAt).not.toBe(-1);
        for (const o of tailOutcomes.slice(healedAt)) expect(o).toEqual({ died: false, mismatched: false, routed: true });
        expect(owed).toEqual([]);
        await new Promise((r) => setTimeout(r, 5));
        expect(m.unreadLines).toBe(0);

        totals.runs++;
        totals.lookups += outcomes.length;
        totals.deaths += deaths;
        totals.mismatches += mismatches;
        totals.healedRoutes += outcomes.filter((o) => o.mismatched && o.routed).length;
        totals.failedClosed += outcomes.filter((o) => o.mismatched && !o.routed && !o.died).length;
        broken = false;
      }),
      { numRuns: 30, interruptAfterTimeLimit: 45_000, markInterruptAsFailure: true },
    );
    console.log(`healing model: ${JSON.stringify(totals)}`);
    // The runs really exercised the scheme: shifts happened, and were healed both ways.
    expect(totals.runs).toBe(30);
    expect(totals.mismatches).toBeGreaterThan(0);
    expect(totals.healedRoutes).toBeGreaterThan(0);
    expect(totals.failedClosed).toBeGreaterThan(0);
    expect(map.stderr).toMatch(/PLX0901/);
    expect(await map.close()).toBe(0);
    map = undefined;
  }, 90_000);
});
