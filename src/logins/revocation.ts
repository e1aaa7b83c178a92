// Which cached logins a change in the store makes wrong, and removing them: a user changed in any way (password,
// disabled, deleted, renamed away) loses every cached login at once, so the old password stops working on the next
// request and the new one is checked by plexer; a TRUNCATE of the users empties the cache. Group and role changes
// leave logins alone: routing and roles are looked up on every request anyway.
import { coerceError } from '../errors.js';
import type { Logger } from '../log.js';
import { parseChange } from '../store/changes.js';
import { loginCacheKeys } from './cache-key.js';
import type { MemcacheClient } from './memcache.js';

export async function revokeUser(cache: Pick<MemcacheClient, 'delete'>, user: string): Promise<number> {
  let removed = 0;
  for (const key of loginCacheKeys(user)) if (await cache.delete(key)) removed++;
  return removed;
}

export async function applyLoginChange(cache: Pick<MemcacheClient, 'delete' | 'flushAll'>, payload: string, log: Logger): Promise<void> {
  const change = parseChange(payload);
  try {
    if (change?.kind === 'all') {
      await cache.flushAll();
      log.info('login cache emptied', { reason: 'users truncated' });
    } else if (change?.kind === 'user') {
      const removed = await revokeUser(cache, change.name);
      if (removed > 0) log.info('cached login removed', { user: change.name });
    }
  } catch (error) {
    log.error('cannot remove a cached login; it stays until AuthnCacheTimeout', {
      user: change?.kind === 'user' ? change.name : undefined,
      error: coerceError(error).message,
    });
  }
}
