// The checks behind `plexer authd`, with the same answers as `plexer authn` / `plexer authz`:
//   authenticate: the password check of auth/password-check.ts.
//   authorize: the role check of auth/role-check.ts.
// What a long-running process adds: caches emptied by the store's change notifications, bcrypt in worker
// threads behind a bounded queue, and one verification shared by identical concurrent attempts.
import { createHmac, randomBytes } from 'node:crypto';
import type pg from 'pg';
import type { PlexerConfig } from '../config.js';
import { accept, failure, refuse, type Outcome } from '../auth/outcome.js';
import { checkPassword, refusal, refuseOnError, type PasswordCheck } from '../auth/password-check.js';
import { noRole, roleCheckFailed, rolesToCheck } from '../auth/role-check.js';
import { parseChange } from '../store/changes.js';
import type { Logger } from '../log.js';
import { BcryptPool } from './bcrypt-pool.js';
import { hasAnyRole } from '../store/credentials.js';
import { lockedSubjectsClearingUser } from '../store/login-failures.js';
import { clientAddress, exemptKnown, lookedUp, subjectsOf, throttleOf, type Subjects, type Throttle } from '../store/throttle.js';
import type { LockMirror } from '../lockout/lock-mirror.js';

import { QueueFullError, Semaphore, WaitAbortedError } from './semaphore.js';
import { SubjectQueue } from './subject-queue.js';
import { UserKeyedCache } from './user-cache.js';

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

// What a cold check waits its turn behind (subject-queue.ts): the user, and the address when this check counts its
// refusal, so that parallel guesses are each counted before the next is verified. A check whose refusal Apache's
// log counts (plexer checker for `authn --counted-by-log`, whose refusal page counts it before the answer, as for
// authn on its own) is not held behind its address: a crowd behind one address (a NAT, a proxy; the bench's 1,000
// first logins from 127.0.0.1) would otherwise be checked one at a time until authn's time limit refused them.
export function turnKeys(user: string, address: string | undefined, countFailures: boolean, maxFailures: number): string[] {
  if (maxFailures === 0) return [];
  return [`u\0${user}`, ...(countFailures && address !== undefined ? [`a\0${address}`] : [])];
}

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
  private readonly inTurn = new SubjectQueue();
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

  // A change notification from the store (store/changes.ts).
  onChange(payload: string): void {
    const change = parseChange(payload);
    if (change?.kind === 'all') return this.clear();
    if (change?.kind === 'user') {
      // The password, the disabled flag or the name changed (or the user is gone): both answers may be wrong.
      const dropped = this.credentials.evictUser(change.name);
      this.roles.evictUser(change.name);
      if (dropped > 0) this.log.debug('cached credentials dropped', { user: change.name, entries: dropped });
    } else if (change?.kind === 'roles') {
      this.roles.evictUser(change.name);
    }
    // A daemon group change: neither a password nor a role depends on it.
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

  // An answer from memory alone (a cached credential, lockouts from the live mirror) comes back as is, not as
  // a promise: it needs no deadline, and a warm check then costs no timer and no promise chain.
  // countFailures false: Apache's log counts the refusal instead (`plexer lockout`, the generated config's Basic).
  authenticate(user: string, password: string, ip: string | undefined, countFailures = true): Outcome | Promise<Outcome> {
    const address = clientAddress(ip);
    const digest = this.digest(user, password);
    const useCache = this.listening();

    // Only a verified (so well-formed) user name is ever cached.
    if (useCache && this.credentials.get(digest)) {
      this.counters.credentialHits++;
      return this.warm(user, ip, subjectsOf(user, address, this.throttle));
    }
    this.counters.credentialMisses++;
    return this.verifyOnce(user, password, ip, address, digest, useCache, countFailures);
  }

  private async verifyOnce(
    user: string,
    password: string,
    ip: string | undefined,
    address: string | undefined,
    digest: string,
    useCache: boolean,
    countFailures: boolean,
  ): Promise<Outcome> {
    // Identical concurrent attempts (a browser loading a page's assets in parallel) share one verification,
    // unless something was invalidated after it started.
    const flightKey = `${digest}\0${address ?? ''}\0${countFailures}`;
    const flying = this.inflight.get(flightKey);
    if (flying && flying.epoch === this.credentials.epoch) {
      this.counters.sharedVerifications++;
      return flying.result;
    }
    const epoch = this.credentials.epoch;
    // Not the request's own signal: others may share this verification. Its queue wait ends at the deadline.
    const result = this.cold(user, password, ip, digest, epoch, useCache, countFailures, AbortSignal.timeout(this.config.authnTimeoutMs));
    const entry = { epoch, result };
    this.inflight.set(flightKey, entry);
    try {
      return await result;
    } finally {
      if (this.inflight.get(flightKey) === entry) this.inflight.delete(flightKey);
    }
  }

  async authorize(user: string, roleList: string[], signal: AbortSignal): Promise<Outcome> {
    const roles = rolesToCheck(this.log, user, roleList);
    if (!roles) return refuse('bad-input');
    const key = `${user}\0${roles.join(' ')}`;
    const useCache = this.listening();
    const cached = useCache ? this.roles.get(key) : undefined;
    if (cached !== undefined) {
      this.counters.roleHits++;
      return cached ? accept('cached') : noRole(this.log, user, roles);
    }
    this.counters.roleMisses++;
    const epoch = this.roles.epoch;
    try {
      const held = await hasAnyRole(this.db, user, roles);
      if (signal.aborted) return failure('aborted');
      if (useCache) this.roles.set(user, key, held, epoch);
      return held ? accept('role') : noRole(this.log, user, roles);
    } catch (error) {
      return roleCheckFailed(this.log, error, user);
    }
  }

  // A credential verified recently and not changed since: only the lockout state is checked — in memory
  // while the mirror is live (no round trip; the failure count is then reset only by the next cold success),
  // else in the store, which also resets the count as `plexer authn` does, in one statement.
  private warm(user: string, ip: string | undefined, subjects: Subjects): Outcome | Promise<Outcome> {
    if (this.throttle.maxFailures === 0) return accept('cached');
    if (this.lockouts && this.lockoutsLive()) {
      const locked = exemptKnown(this.lockouts.locked(lookedUp(subjects)), subjects);
      return locked.length > 0 ? refusal(this.log, 'locked-out', user, ip, { locked: locked.join(' ') }) : accept('cached');
    }
    return this.warmFromStore(user, ip, subjects);
  }

  private async warmFromStore(user: string, ip: string | undefined, subjects: Subjects): Promise<Outcome> {
    try {
      const locked = await lockedSubjectsClearingUser(this.db, lookedUp(subjects), subjects.own);
      if (locked.length > 0) return refusal(this.log, 'locked-out', user, ip, { locked: locked.join(' ') });
      return accept('cached');
    } catch (error) {
      return refuseOnError(this.log, error, user, ip);
    }
  }

  private async cold(
    user: string,
    password: string,
    ip: string | undefined,
    digest: string,
    epoch: number,
    useCache: boolean,
    countFailures: boolean,
    signal: AbortSignal,
  ): Promise<Outcome> {
    try {
      const keys = turnKeys(user, clientAddress(ip), countFailures, this.throttle.maxFailures);
      const checked = await this.inTurn.run(keys, () => checkPassword(this.passwordCheck(signal, countFailures), user, password, ip));
      if (checked.verdict === 'accept' && useCache && this.listening()) this.credentials.set(user, digest, true, epoch);
      return { verdict: checked.verdict, reason: checked.reason };
    } catch (error) {
      if (error instanceof QueueFullError) {
        this.log.warn('too many password checks waiting; refusing', { user, ip });
        return failure('overloaded');
      }
      if (error instanceof WaitAbortedError) return failure('aborted');
      return refuseOnError(this.log, error, user, ip);
    }
  }

  // bcrypt in the worker threads, behind the cap. A rehash after a success runs in the background (the answer
  // does not wait for it); the UPDATE's notification drops the entry just cached, and the next request
  // verifies once against the new hash.
  private passwordCheck(signal: AbortSignal, countFailures: boolean): PasswordCheck {
    return {
      db: this.db,
      log: this.log,
      throttle: this.throttle,
      bcryptCost: this.config.bcryptCost,
      countFailures,
      verify: (password, hash) =>
        this.bcrypt.run(async () => {
          this.counters.bcryptRuns++;
          return this.bcryptPool.verify(password, hash);
        }, signal),
      hash: (password, cost) => this.bcrypt.run(() => this.bcryptPool.hash(password, cost)),
    };
  }

  async close(): Promise<void> {
    await this.bcryptPool.close();
  }

  private digest(user: string, password: string): string {
    return createHmac('sha256', this.hmacKey).update(user).update('\0').update(password).digest('base64');
  }
}
