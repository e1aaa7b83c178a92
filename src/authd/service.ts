// The checks behind `plexer authd`, with the same answers as `plexer authn` / `plexer authz`:
//   authenticate: only an existing, enabled user whose bcrypt password verifies; a user name that does not
//   exist costs the same bcrypt work (dummyHash); lockout as configured; any error refuses.
//   authorize: the user is enabled and holds one of the roles.
// What a long-running process adds: caches emptied by the store's change notifications, bcrypt in worker
// threads behind a bounded queue, and one verification shared by identical concurrent attempts.
import { createHmac, randomBytes } from 'node:crypto';
import type pg from 'pg';
import type { PlexerConfig } from '../config.js';
import type { Logger, LogFields } from '../log.js';
import { isRoleName, isUserName } from '../names.js';
import { bcryptCost, checkNewPassword, dummyHash, refusalNeedsPadding } from '../password.js';
import { BcryptPool } from './bcrypt-pool.js';
import { fetchCredential, hasAnyRole, upgradePasswordHash } from '../store/credentials.js';
import { lockedSubjectsClearingUser } from '../store/login-failures.js';
import { clearOnSuccess, clientAddress, countFailure, lockedNow, subjectsOf, throttleOf, type Subjects, type Throttle } from '../store/throttle.js';
import type { LockMirror } from '../lockout/lock-mirror.js';

import { QueueFullError, Semaphore, WaitAbortedError } from './semaphore.js';
import { UserKeyedCache } from './user-cache.js';

export type Verdict = 'accept' | 'refuse' | 'error';

export interface Outcome {
  verdict: Verdict;
  // Why, for the log: accepted, cached, wrong-password, no-such-user, disabled, locked-out, no-role, …
  reason: string;
}

export interface AuthServiceOptions {
  db: pg.Pool;
  config: PlexerConfig;
  log: Logger;
  // True while the LISTEN connection is up: caches are only read and filled then, since a change made while
  // it is down would not be heard.
  listening: () => boolean;
  // Worker threads running bcrypt (default: cores - 1, 1..4), and how many checks may wait for one.
  bcryptThreads?: number;
  bcryptQueue?: number;
  roleCacheTtlMs?: number;
  // Lockouts in memory (warm checks then read no table), trusted while `lockoutsLive()`.
  lockouts?: LockMirror;
  lockoutsLive?: () => boolean;
}

export interface AuthStats {
  credentialHits: number;
  credentialMisses: number;
  sharedVerifications: number;
  bcryptRuns: number;
  roleHits: number;
  roleMisses: number;
  credentialEntries: number;
  roleEntries: number;
  bcryptRunning: number;
  bcryptQueued: number;
}

// More roles than any sensible Require line names is refused as malformed.
const MAX_ROLE_LIST = 64;

const accept = (reason: string): Outcome => ({ verdict: 'accept', reason });
const refuse = (reason: string): Outcome => ({ verdict: 'refuse', reason });
const failure = (reason: string): Outcome => ({ verdict: 'error', reason });

export class AuthService {
  private readonly db: pg.Pool;
  private readonly config: PlexerConfig;
  private readonly log: Logger;
  private readonly listening: () => boolean;
  // Per process, never stored: a dump of the cache shows digests that cannot be tested offline without it.
  private readonly hmacKey = randomBytes(32);
  private readonly credentials: UserKeyedCache<true>;
  private readonly roles: UserKeyedCache<boolean>;
  private readonly bcrypt: Semaphore;
  private readonly bcryptPool: BcryptPool;
  private readonly inflight = new Map<string, { epoch: number; result: Promise<Outcome> }>();
  private readonly throttle: Throttle;
  private readonly lockouts: LockMirror | undefined;
  private readonly lockoutsLive: () => boolean;
  private readonly counters = { credentialHits: 0, credentialMisses: 0, sharedVerifications: 0, bcryptRuns: 0, roleHits: 0, roleMisses: 0 };

  constructor(options: AuthServiceOptions) {
    this.db = options.db;
    this.config = options.config;
    this.log = options.log;
    this.listening = options.listening;
    this.credentials = new UserKeyedCache({ max: options.config.cacheMax, ttlMs: options.config.cacheTtlMs });
    this.roles = new UserKeyedCache({
      max: options.config.cacheMax,
      ttlMs: options.roleCacheTtlMs ?? Math.min(options.config.cacheTtlMs, 60_000),
    });
    this.bcryptPool = new BcryptPool(options.bcryptThreads);
    this.bcrypt = new Semaphore(this.bcryptPool.size, options.bcryptQueue ?? 256);
    this.throttle = throttleOf(options.config);
    this.lockouts = options.lockouts;
    this.lockoutsLive = options.lockoutsLive ?? (() => false);
  }

  // A change notification from the store: "u:<user>", "r:<user>", "g:<group>" or "*".
  onChange(payload: string): void {
    if (payload === '*') return this.clear();
    const colon = payload.indexOf(':');
    if (colon === -1) return;
    const table = payload.slice(0, colon);
    const user = payload.slice(colon + 1);
    if (table === 'u') {
      // The password, the disabled flag or the name changed (or the user is gone): both answers may be wrong.
      const dropped = this.credentials.evictUser(user);
      this.roles.evictUser(user);
      if (dropped > 0) this.log.debug('cached credentials dropped', { user, entries: dropped });
    } else if (table === 'r') {
      this.roles.evictUser(user);
    }
    // 'g:' changes a daemon group: neither a password nor a role depends on it.
  }

  // After (re)connecting LISTEN: changes made meanwhile were not heard.
  clear(): void {
    this.credentials.clear();
    this.roles.clear();
  }

  stats(): AuthStats {
    return {
      ...this.counters,
      credentialEntries: this.credentials.size,
      roleEntries: this.roles.size,
      bcryptRunning: this.bcrypt.running,
      bcryptQueued: this.bcrypt.queued,
    };
  }

  // For tests: what the credential cache holds (digests and user names only).
  dumpCredentialCache(): Array<{ key: string; user: string }> {
    return this.credentials.dump();
  }

  async authenticate(user: string, password: string, ip: string | undefined, signal: AbortSignal): Promise<Outcome> {
    if (!isUserName(user)) {
      // Same cost as any other refusal, so the shape of the name does not show in the timing.
      await this.verify(password, dummyHash(this.config.bcryptCost), signal).catch(() => false);
      return this.refused('invalid-user-name', user, ip);
    }
    const address = clientAddress(ip);
    const subjects = subjectsOf(user, address, this.throttle);
    const digest = this.digest(user, password);
    const useCache = this.listening();

    if (useCache && this.credentials.get(digest)) {
      this.counters.credentialHits++;
      return this.warm(user, ip, subjects);
    }
    this.counters.credentialMisses++;

    // Identical concurrent attempts (a browser loading a page's assets in parallel) share one verification,
    // unless something was invalidated after it started.
    const flightKey = `${digest}\0${address ?? ''}`;
    const flying = this.inflight.get(flightKey);
    if (flying && flying.epoch === this.credentials.epoch) {
      this.counters.sharedVerifications++;
      return flying.result;
    }
    const epoch = this.credentials.epoch;
    // Not the request's own signal: others may share this verification. Its queue wait ends at the deadline.
    const result = this.cold(user, password, ip, subjects, digest, epoch, useCache, AbortSignal.timeout(this.config.authnTimeoutMs));
    const entry = { epoch, result };
    this.inflight.set(flightKey, entry);
    try {
      return await result;
    } finally {
      if (this.inflight.get(flightKey) === entry) this.inflight.delete(flightKey);
    }
  }

  async authorize(user: string, roleList: string[], signal: AbortSignal): Promise<Outcome> {
    if (!isUserName(user) || roleList.length === 0 || roleList.length > MAX_ROLE_LIST || !roleList.every(isRoleName)) {
      this.log.warn('role check refused', { reason: 'bad-input', user: isUserName(user) ? user : undefined });
      return refuse('bad-input');
    }
    const roles = [...new Set(roleList)].sort();
    const key = `${user}\0${roles.join(' ')}`;
    const useCache = this.listening();
    const cached = useCache ? this.roles.get(key) : undefined;
    if (cached !== undefined) {
      this.counters.roleHits++;
      return cached ? accept('cached') : this.noRole(user, roles);
    }
    this.counters.roleMisses++;
    const epoch = this.roles.epoch;
    try {
      const held = await hasAnyRole(this.db, user, roles);
      if (signal.aborted) return failure('aborted');
      if (useCache) this.roles.set(user, key, held, epoch);
      return held ? accept('role') : this.noRole(user, roles);
    } catch (error) {
      this.log.error('cannot check roles; refusing', { user, error: (error as Error).message });
      return failure('store-error');
    }
  }

  private noRole(user: string, roles: string[]): Outcome {
    this.log.info('role check refused', { reason: 'no-role', user, roles: roles.join(' ') });
    return refuse('no-role');
  }

  // A credential verified recently and not changed since: only the lockout state is checked — in memory
  // while the mirror is live (no round trip; the failure count is then reset only by the next cold success),
  // else in the store, which also resets the count as `plexer authn` does, in one statement.
  private async warm(user: string, ip: string | undefined, subjects: Subjects): Promise<Outcome> {
    if (this.throttle.maxFailures === 0) return accept('cached');
    if (this.lockouts && this.lockoutsLive()) {
      const locked = this.lockouts.locked(subjects.all);
      return locked.length > 0 ? this.refused('locked-out', user, ip, { locked: locked.join(' ') }) : accept('cached');
    }
    try {
      const locked = await lockedSubjectsClearingUser(this.db, subjects.all, subjects.own);
      if (locked.length > 0) return this.refused('locked-out', user, ip, { locked: locked.join(' ') });
      return accept('cached');
    } catch (error) {
      this.log.error('cannot check password; refusing', { user, error: (error as Error).message, ip });
      return failure('store-error');
    }
  }

  private async cold(user: string, password: string, ip: string | undefined, subjects: Subjects, digest: string,
    epoch: number, useCache: boolean, signal: AbortSignal): Promise<Outcome> {
    const { throttle } = this;
    try {
      const locked = await lockedNow(this.db, subjects, throttle);
      if (locked.length > 0) return this.refused('locked-out', user, ip, { locked: locked.join(' ') });
      const credential = await fetchCredential(this.db, user);
      const verified = await this.verify(password, credential?.passwordHash ?? dummyHash(this.config.bcryptCost), signal);
      if (!credential || !verified) {
        if (credential && refusalNeedsPadding(credential.passwordHash, this.config.bcryptCost)) {
          await this.verify(password, dummyHash(this.config.bcryptCost), signal);
        }
        await countFailure(this.db, subjects, throttle, this.log);
        return this.refused(credential ? 'wrong-password' : 'no-such-user', user, ip);
      }
      if (credential.disabled) return this.refused('disabled', user, ip);
      await clearOnSuccess(this.db, subjects, throttle);
      if (useCache && this.listening()) this.credentials.set(user, digest, true, epoch);
      this.rehashIfWeak(user, password, credential.passwordHash);
      this.log.debug('login accepted', { user, ip });
      return accept('verified');
    } catch (error) {
      if (error instanceof QueueFullError) {
        this.log.warn('too many password checks waiting; refusing', { user, ip });
        return failure('overloaded');
      }
      if (error instanceof WaitAbortedError) return failure('aborted');
      this.log.error('cannot check password; refusing', { user, error: (error as Error).message, ip });
      return failure('store-error');
    }
  }

  private async verify(password: string, hash: string, signal: AbortSignal): Promise<boolean> {
    return this.bcrypt.run(async () => {
      this.counters.bcryptRuns++;
      return this.bcryptPool.verify(password, hash);
    }, signal);
  }

  async close(): Promise<void> {
    await this.bcryptPool.close();
  }

  // As `plexer authn`: a hash below the configured cost is replaced after a successful login. In the
  // background here — the answer does not wait — and through the same bcrypt cap. The UPDATE's notification
  // drops the entry just cached; the next request verifies once against the new hash.
  private rehashIfWeak(user: string, password: string, hash: string): void {
    const cost = bcryptCost(hash) ?? 0;
    if (cost >= this.config.bcryptCost) return;
    void this.bcrypt
      .run(async () => {
        checkNewPassword(password);
        return this.bcryptPool.hash(password, this.config.bcryptCost);
      })
      .then(async (stronger) => {
        await upgradePasswordHash(this.db, user, hash, stronger);
        this.log.info('password rehashed at the configured cost', { user, from: cost, to: this.config.bcryptCost });
      })
      .catch((error: unknown) => this.log.warn('cannot rehash password', { user, error: (error as Error).message }));
  }

  private refused(reason: string, user: string, ip: string | undefined, extra: LogFields = {}): Outcome {
    this.log.warn('login refused', { reason, user: isUserName(user) ? user : undefined, ip, ...extra });
    return refuse(reason);
  }

  private digest(user: string, password: string): string {
    return createHmac('sha256', this.hmacKey).update(user).update('\0').update(password).digest('base64');
  }
}
