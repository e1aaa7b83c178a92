// AuthService and the FastCGI handler in-process, against a real store: cache keys, invalidation races,
// bcrypt off the event loop, deadlines and failing closed.
import { execFileSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import bcrypt from 'bcryptjs';
import type pg from 'pg';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { BcryptPool } from '../../src/authd/bcrypt-pool.js';
import { createAuthdHandler } from '../../src/authd/handler.js';
import { AuthService } from '../../src/authd/service.js';
import { Semaphore, QueueFullError } from '../../src/authd/semaphore.js';
import { loadConfig, type PlexerConfig } from '../../src/config.js';
import { Role } from '../../src/fastcgi/protocol.js';
import type { Logger, LogFields } from '../../src/log.js';
import { createPool } from '../../src/store/connect.js';
import { freshStore, runPlexer, type TestStore } from '../helpers/plexer.js';

let store: TestStore;
let config: PlexerConfig;
let db: pg.Pool;
const lines: string[] = [];
const emit =
  (level: string) =>
  (event: string, fields: LogFields = {}) =>
    void lines.push(`${level}: ${event} ${JSON.stringify(fields)}`);
const log: Logger = { debug: () => undefined, info: emit('info'), warn: emit('warn'), error: emit('error'), scope: () => log };
const services: AuthService[] = [];
const signal = new AbortController().signal;

function service(options: { listening?: () => boolean; config?: PlexerConfig; db?: pg.Pool; bcryptQueue?: number } = {}): AuthService {
  const s = new AuthService({
    db: options.db ?? db,
    config: options.config ?? config,
    log,
    listening: options.listening ?? (() => true),
    bcryptThreads: 1,
    ...(options.bcryptQueue ? { bcryptQueue: options.bcryptQueue } : {}),
  });
  services.push(s);
  return s;
}

beforeAll(async () => {
  store = await freshStore({ lockout_max_failures: 1000 });
  config = loadConfig({ path: store.configPath, env: {} });
  db = createPool(config, { applicationName: 'authd-service-test' });
  // Dropping the database at the end terminates connections still closing; that is expected, not a failure.
  db.on('error', () => undefined);
  await runPlexer(['group', 'add', 't1'], { configPath: store.configPath });
  for (const [name, password] of [
    ['alice', 'pw-alice'],
    ['bob', 'pw-bob'],
    ['carol', 'pw-carol'],
  ]) {
    const added = await runPlexer(['user', 'add', name!, '--group', 't1', '--password-stdin'], {
      configPath: store.configPath,
      input: `${password}\n`,
    });
    expect(added.code).toBe(0);
  }
  await runPlexer(['user', 'grant', 'alice', 'admins'], { configPath: store.configPath });
});

afterAll(async () => {
  await Promise.all(services.map((s) => s.close()));
  await db?.end();
  await store?.close();
});

describe('AuthService', () => {
  it('caches a verified credential under an HMAC digest that reveals no password', async () => {
    const s = service();
    expect((await s.authenticate('alice', 'pw-alice', '127.0.0.1')).verdict).toBe('accept');
    expect(await s.authenticate('alice', 'pw-alice', '127.0.0.1')).toEqual({ verdict: 'accept', reason: 'cached' });
    const dump = JSON.stringify(s.dumpCredentialCache());
    expect(dump).not.toContain('pw-alice');
    // Not a plain (unkeyed) hash either: without the per-process key a dump cannot be tested offline.
    expect(dump).not.toContain(createHash('sha256').update('alice\0pw-alice').digest('base64'));
    expect(s.dumpCredentialCache()).toEqual([{ key: expect.stringMatching(/^[A-Za-z0-9+/]{43}=$/), user: 'alice' }]);
    // Another process (another key) produces another digest for the same credential.
    const other = service();
    await other.authenticate('alice', 'pw-alice', '127.0.0.1');
    expect(other.dumpCredentialCache()[0]!.key).not.toBe(s.dumpCredentialCache()[0]!.key);
    // Failures are never cached.
    await s.authenticate('alice', 'nope', '127.0.0.1');
    expect(s.stats().credentialEntries).toBe(1);
  });

  it('spends the same bcrypt work on unknown and malformed user names', async () => {
    const s = service();
    const before = s.stats().bcryptRuns;
    expect((await s.authenticate('nobody', 'x', undefined)).reason).toBe('no-such-user');
    expect((await s.authenticate('bad name', 'x', undefined)).reason).toBe('invalid-user-name');
    expect((await s.authenticate('alice', 'x', undefined)).reason).toBe('wrong-password');
    expect(s.stats().bcryptRuns - before).toBe(3);
  });

  it('drops a user\'s cached credentials on "u:<user>", everything on "*", and only then', async () => {
    const s = service();
    await s.authenticate('alice', 'pw-alice', undefined);
    await s.authenticate('bob', 'pw-bob', undefined);
    s.onChange('g:t1');
    s.onChange('r:alice');
    expect(s.stats().credentialEntries).toBe(2);
    s.onChange('u:alice');
    expect(s.dumpCredentialCache().map((e) => e.user)).toEqual(['bob']);
    s.onChange('*');
    expect(s.stats().credentialEntries).toBe(0);
  });

  it('does not cache an answer whose check raced with a change notification', async () => {
    const s = service();
    const pending = s.authenticate('alice', 'pw-alice', undefined);
    s.onChange('u:alice'); // heard while the check was reading the store or running bcrypt
    expect((await pending).verdict).toBe('accept');
    expect(s.stats().credentialEntries).toBe(0);
  });

  it('neither reads nor fills the cache while LISTEN is down', async () => {
    let listening = false;
    const s = service({ listening: () => listening });
    await s.authenticate('alice', 'pw-alice', undefined);
    expect((await s.authenticate('alice', 'pw-alice', undefined)).reason).toBe('verified');
    expect(s.stats().credentialEntries).toBe(0);
    listening = true;
    await s.authenticate('alice', 'pw-alice', undefined);
    expect((await s.authenticate('alice', 'pw-alice', undefined)).reason).toBe('cached');
  });

  it('shares one bcrypt run among identical concurrent attempts', async () => {
    const s = service();
    const before = s.stats().bcryptRuns;
    const outcomes = await Promise.all(Array.from({ length: 10 }, () => s.authenticate('bob', 'pw-bob', '127.0.0.1')));
    expect(outcomes.every((o) => o.verdict === 'accept')).toBe(true);
    expect(s.stats().bcryptRuns - before).toBe(1);
    expect(s.stats().sharedVerifications).toBe(9);
  });

  it('caches role answers until "r:" or "u:" for that user', async () => {
    const s = service();
    expect((await s.authorize('alice', ['admins'], signal)).verdict).toBe('accept');
    expect((await s.authorize('alice', ['admins'], signal)).reason).toBe('cached');
    expect((await s.authorize('bob', ['admins', 'ops'], signal)).verdict).toBe('refuse');
    expect((await s.authorize('bob', ['ops', 'admins'], signal)).verdict).toBe('refuse');
    expect(s.stats().roleHits).toBe(2);
    await runPlexer(['user', 'grant', 'bob', 'ops'], { configPath: store.configPath });
    s.onChange('r:bob');
    expect((await s.authorize('bob', ['admins', 'ops'], signal)).verdict).toBe('accept');
    expect((await s.authorize('alice', ['admins'], signal)).reason).toBe('cached');
    expect((await s.authorize('bob', ['no such'], signal)).reason).toBe('bad-input');
  });

  it('fails closed (500) when the store is unreachable', async () => {
    const deadDb = createPool(
      { ...config, connection: { host: '127.0.0.1', port: 1, database: 'x', user: 'x' } },
      { connectTimeoutMs: 500 },
    );
    const s = service({ db: deadDb });
    expect((await s.authenticate('alice', 'pw-alice', undefined)).verdict).toBe('error');
    const handler = createAuthdHandler({ service: s, log, deadlineMs: 5_000 });
    const params = new Map([
      ['FCGI_APACHE_ROLE', 'AUTHENTICATOR'],
      ['REMOTE_USER', 'alice'],
      ['REMOTE_PASSWD', 'pw-alice'],
    ]);
    expect((await handler({ requestId: 1, role: Role.Authorizer, params, signal })).status).toBe(500);
    expect(
      (
        await handler({
          requestId: 1,
          role: Role.Authorizer,
          params: new Map([
            ['FCGI_APACHE_ROLE', 'AUTHORIZER'],
            ['REMOTE_USER', 'alice'],
            ['PLEXER_ROLES', 'admins'],
          ]),
          signal,
        })
      ).status,
    ).toBe(500);
    await deadDb.end();
  });

  it('refuses (401) at the deadline, and refuses at once when the bcrypt queue is full', async () => {
    // A cost-13 hash (about a second in bcryptjs: long enough for the others to arrive on a loaded machine) and a
    // queue of one: the second and third checks cannot start. Three users: one user's checks run in turn
    // (subject-queue.ts), so only different users' meet at the queue.
    // As the operator: the service's own pool is the helpers' role, which cannot write users.
    const users = ['alice', 'bob', 'carol'];
    await store.sql.query('UPDATE users SET password_hash = $1 WHERE name = ANY($2)', [bcrypt.hashSync('slow', 13), users]);
    const s = service({ bcryptQueue: 1 });
    // The store's connections are opened first (three checks at once need three): on a loaded machine opening them
    // took longer than the deadline, and every check ran out of time before the queue could refuse one.
    await Promise.all(users.map((user) => s.authorize(user, ['admins'], signal)));
    const handler = createAuthdHandler({ service: s, log, deadlineMs: 300 });
    const ask = (user: string) =>
      handler({
        requestId: 1,
        role: Role.Authorizer,
        params: new Map([
          ['FCGI_APACHE_ROLE', 'AUTHENTICATOR'],
          ['REMOTE_USER', user],
          ['REMOTE_PASSWD', 'slow'],
        ]),
        signal,
      });
    const answers = await Promise.all(users.map(ask));
    expect(answers.map((a) => a.status).sort()).toEqual([401, 401, 500]);
    expect(lines.some((l) => l.includes('time limit reached; refusing'))).toBe(true);
    expect(lines.some((l) => l.includes('too many password checks waiting'))).toBe(true);
  });
});

describe('bcrypt off the event loop', () => {
  it('keeps the event loop responsive while bcrypt runs at cost 11 (bcryptjs async would block it ~100 ms at a time)', async () => {
    const pool = new BcryptPool(1);
    const hash = bcrypt.hashSync('pw', 11);
    let maxLag = 0;
    let last = performance.now();
    const timer = setInterval(() => {
      const now = performance.now();
      maxLag = Math.max(maxLag, now - last - 5);
      last = now;
    }, 5);
    const start = performance.now();
    expect(await pool.verify('pw', hash)).toBe(true);
    expect(await pool.verify('px', hash)).toBe(false);
    const elapsed = performance.now() - start;
    clearInterval(timer);
    await pool.close();
    console.log(`two cost-11 verifications in a worker: ${elapsed.toFixed(0)} ms; worst event-loop lag meanwhile ${maxLag.toFixed(1)} ms`);
    expect(maxLag).toBeLessThan(Math.max(50, elapsed / 4));
  });

  it('answers like verifyPassword for odd input', async () => {
    const pool = new BcryptPool(1);
    expect(await pool.verify('pw', 'not a hash')).toBe(false);
    expect(await pool.verify('p'.repeat(73), bcrypt.hashSync('p'.repeat(72), 4))).toBe(false);
    expect(await pool.verify('é', bcrypt.hashSync('é', 4))).toBe(true);
    // htpasswd's formats, as imported (htpasswd -nbm / -nbs pw).
    for (const flag of ['-nbm', '-nbs']) {
      const hash = execFileSync('htpasswd', [flag, 'x', 'pw'], { encoding: 'utf8' }).trim().split(':')[1]!;
      expect(await pool.verify('pw', hash)).toBe(true);
      expect(await pool.verify('px', hash)).toBe(false);
    }
    await pool.close();
  });

  it('bounds the semaphore queue', async () => {
    const sem = new Semaphore(1, 1);
    const release = await sem.acquire();
    const waiting = sem.acquire();
    await expect(sem.acquire()).rejects.toBeInstanceOf(QueueFullError);
    release();
    (await waiting)();
    expect(sem.running).toBe(0);
  });
});
