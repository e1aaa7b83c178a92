import { LRUCache } from 'lru-cache';

// An LRU of answers that belong to one user each, so a change notification for that user ("u:alice",
// "r:alice") drops exactly that user's entries. Keys are opaque to this class (the credential cache uses
// HMAC digests, never the password).
//
// A check that reads the store and then stores its answer races with notifications: a change committed
// after the read but heard before the store would be lost. So every invalidation bumps `epoch`, a check
// takes `epoch` before reading, and `set` refuses the answer if anything was invalidated meanwhile (changes
// are rare; skipping one insertion is harmless).
export class UserKeyedCache<V extends {}> {
  private readonly lru: LRUCache<string, { user: string; value: V }>;
  private readonly byUser = new Map<string, Set<string>>();
  private currentEpoch = 0;

  constructor(options: { max: number; ttlMs: number }) {
    this.lru = new LRUCache({
      max: options.max,
      ttl: options.ttlMs,
      // Stale entries go when touched or evicted; the index follows through dispose.
      dispose: (entry, key) => this.unindex(entry.user, key),
    });
  }

  get epoch(): number {
    return this.currentEpoch;
  }

  get size(): number {
    return this.lru.size;
  }

  get(key: string): V | undefined {
    return this.lru.get(key)?.value;
  }

  // False (and nothing stored) when an invalidation happened since `epoch` was read.
  set(user: string, key: string, value: V, epoch: number): boolean {
    if (epoch !== this.currentEpoch) return false;
    this.lru.set(key, { user, value });
    let keys = this.byUser.get(user);
    if (!keys) this.byUser.set(user, (keys = new Set()));
    keys.add(key);
    return true;
  }

  evictUser(user: string): number {
    this.currentEpoch++;
    const keys = this.byUser.get(user);
    if (!keys) return 0;
    const count = keys.size;
    // A copy: deleting from the LRU runs its dispose, which removes each key from this very set.
    // oxlint-disable-next-line unicorn/no-useless-spread
    for (const key of [...keys]) this.lru.delete(key);
    this.byUser.delete(user);
    return count;
  }

  clear(): void {
    this.currentEpoch++;
    this.lru.clear();
    this.byUser.clear();
  }

  // What a heap dump would show: keys and user names, for tests.
  dump(): Array<{ key: string; user: string }> {
    return [...this.lru.entries()].map(([key, entry]) => ({ key, user: entry.user }));
  }

  private unindex(user: string, key: string): void {
    const keys = this.byUser.get(user);
    if (!keys) return;
    keys.delete(key);
    if (keys.size === 0) this.byUser.delete(user);
  }
}
