import { LRUCache } from 'lru-cache';
import type { Logger } from '../log.js';
import { withDeadline } from '../deadline.js';

export type Answer = string | null;

export interface ResolverOptions {
  fetch: (key: string) => Promise<Answer>;
  max: number;
  ttlMs: number;
  // A lookup is answered within this time, from the stale entry if there is one, else UNAVAILABLE: mod_rewrite
  // holds a server-wide lock while it waits for the map.
  deadlineMs: number;
  // Queries started and not yet settled, over all keys; past it, misses are answered at once.
  maxInFlight?: number;
  now?: () => number;
  // Told of every answer cached fresh from the store, in the order the resolver learns them, so that a copy of
  // the cache kept elsewhere (the map's main thread) stays the same as this one.
  onFresh?: (key: string, value: Answer) => void;
  log: Logger;
}

export interface Resolver {
  // Synchronous for a fresh cached answer (the hot path: no promise, no timer), else a promise that settles
  // within the deadline.
  resolve(key: string): Answer | Promise<Answer>;
  evict(key: string): void;
  // Every entry, fresh or stale, whose cached value (NO_ANSWER for "no answer") matches.
  evictWhere(matches: (value: string) => boolean): void;
  clear(): void;
  // Every entry must be re-read before it is served fresh again, but stays available as the stale fallback:
  // used after a lost LISTEN connection, when changes may have been missed but the store may still be slow.
  expireAll(): void;
  readonly size: number;
}

// lru-cache cannot hold null; "" stands for a cached "no answer" (no stored value is ever empty).
export const NO_ANSWER = '';
// The answer when nothing is known and the store did not say in time (down, slow, overloaded): a value no group,
// settings module, account or backend can have, so the generated rules show it as our 503 ("try again"), never as
// the 403 of a user who has no group. Never cached.
export const UNAVAILABLE = '-';

// What a lookup falls back to: the stale answer (a stale "no answer" stays null), else UNAVAILABLE.
export function fallback(staleEntry: string | undefined): Answer {
  if (staleEntry === undefined) return UNAVAILABLE;
  return staleEntry === NO_ANSWER ? null : staleEntry;
}

// The one cache shape for map answers, here and in the map's main-thread copy.
export function answerCacheOptions(max: number, ttlMs: number, now?: () => number): LRUCache.Options<string, string, unknown> {
  return {
    max,
    ttl: ttlMs,
    // Expired entries stay until replaced, so they can be served while the store is unreachable.
    noDeleteOnStaleGet: true,
    // A clock handed in (a test's) is read at every access: lru-cache's debounce of 1 ms of real time would
    // otherwise hide a move of that clock until real time passed.
    ...(now ? { perf: { now }, ttlResolution: 0 } : {}),
  };
}

// Every entry kept as a stale fallback only (changes may have been missed: a reconnect): each must be read again
// before it is served fresh. Collected first: set() moves an entry to the front, and iterating while moving would
// never end.
export function expireEvery(cache: LRUCache<string, string>): void {
  const entries = [...cache.entries()];
  for (const [key, value] of entries) cache.set(key, value, { ttl: 1 });
}

// Stale entries too (dump() lists them; entries() does not): a stale answer is still served while the store fails.
export function evictMatching(cache: LRUCache<string, string>, matches: (value: string) => boolean): void {
  for (const [key, entry] of cache.dump()) if (matches(entry.value)) cache.delete(key);
}

export function validateResolverOptions(options: ResolverOptions): void {
  const positive = (name: string, value: number | undefined) => {
    if (value !== undefined && !(Number.isInteger(value) && value > 0)) {
      throw new RangeError(`resolver option ${name} must be a positive whole number, got ${value}`);
    }
  };
  positive('max', options.max);
  positive('ttlMs', options.ttlMs);
  positive('deadlineMs', options.deadlineMs);
  positive('maxInFlight', options.maxInFlight);
}

export function createResolver(options: ResolverOptions): Resolver {
  validateResolverOptions(options);
  const { fetch, deadlineMs, log } = options;
  const maxInFlight = options.maxInFlight ?? 64;
  const cache = new LRUCache<string, string>(answerCacheOptions(options.max, options.ttlMs, options.now));
  // Queries that later lookups of the same key may join. An eviction removes a key from here, but its query
  // still runs and still counts against maxInFlight until it settles.
  const inFlight = new Map<string, Promise<Answer>>();
  let running = 0;
  // Bumped by every eviction: a query that started before a change must not cache its (older) answer.
  let epoch = 0;
  // Bumped by expireAll.
  let expiries = 0;
  let failing = false;

  const startFetch = (key: string): Promise<Answer> => {
    const startedAt = epoch;
    const expiredAt = expiries;
    running++;
    const pending = fetch(key).then(
      (value) => {
        if (failing) log.info('store answering again');
        failing = false;
        if (startedAt === epoch) {
          if (expiredAt === expiries) {
            cache.set(key, value ?? NO_ANSWER);
            options.onFresh?.(key, value);
          }
          // Overlapped an expireAll (a reconnect, changes possibly missed): good enough as a fallback for a
          // key that has none, never as a fresh answer.
          else if (cache.peek(key, { allowStale: true }) === undefined) cache.set(key, value ?? NO_ANSWER, { ttl: 1 });
        }
        return value;
      },
      (error: Error) => {
        if (!failing) log.warn('store lookup failed; answering from stale cache or unavailable', { error: error.message });
        failing = true;
        throw error;
      },
    );
    const settled: Promise<Answer> = pending.finally(() => {
      running--;
      if (inFlight.get(key) === settled) inFlight.delete(key);
    });
    settled.catch(() => undefined);
    inFlight.set(key, settled);
    return settled;
  };

  return {
    resolve(key) {
      const fresh = cache.get(key);
      if (fresh !== undefined) return fresh === NO_ANSWER ? null : fresh;
      const stale = fallback(cache.get(key, { allowStale: true }));
      let pending = inFlight.get(key);
      if (!pending) {
        if (running >= maxInFlight) return stale;
        pending = startFetch(key);
      }
      return withDeadline(
        pending.catch(() => stale),
        deadlineMs,
        () => stale,
      );
    },
    // A query already running may have read the row before the change: later lookups must not join it.
    evict(key) {
      epoch++;
      cache.delete(key);
      inFlight.delete(key);
    },
    // Queries running may be for any of the keys: none of them may cache or be joined.
    evictWhere(matches) {
      epoch++;
      inFlight.clear();
      evictMatching(cache, matches);
    },
    clear() {
      epoch++;
      cache.clear();
      inFlight.clear();
    },
    expireAll() {
      expiries++;
      inFlight.clear();
      expireEvery(cache);
    },
    get size() {
      return cache.size;
    },
  };
}
