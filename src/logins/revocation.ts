// Which cached logins a change in the store makes wrong, and removing them: a user changed in any way (password,
// disabled, deleted) loses every cached login at once, so the old password stops working on the next request and
// the new one is checked by plexer; a TRUNCATE of the users empties the cache. Group and role changes leave logins
// alone: routing and roles are looked up on every request anyway.
import { parseChange } from '../store/changes.js';
import { loginCacheKeys } from './cache-key.js';
import type { MemcacheClient } from './memcache.js';

export type Revocation = { kind: 'user'; user: string } | { kind: 'all' } | null;

export function revocationFor(payload: string): Revocation {
  const change = parseChange(payload);
  if (change?.kind === 'all') return { kind: 'all' };
  if (change?.kind === 'user') return { kind: 'user', user: change.name };
  return null;
}

// How many entries were there. Throws when memcached cannot be reached: the caller keeps the user to try again.
export async function revokeUser(cache: Pick<MemcacheClient, 'delete'>, user: string): Promise<number> {
  let removed = 0;
  for (const key of loginCacheKeys(user)) if (await cache.delete(key)) removed++;
  return removed;
}

export async function revoke(cache: Pick<MemcacheClient, 'delete' | 'flushAll'>, revocation: NonNullable<Revocation>): Promise<number> {
  if (revocation.kind === 'all') {
    await cache.flushAll();
    return 0;
  }
  return revokeUser(cache, revocation.user);
}
