// Apache's login cache kept in memcached instead of shared memory (loginCacheSocket): mod_authn_socache's shmcb
// segment is made anew at every graceful reload, so every logged-in user paid a check again; memcached outlives
// Apache. Its socket is reachable by Apache's workers and root alone (the directory holding it is www-data's,
// 0700): an entry written there logs anyone in. `plexer revoke`, a piped logger run as root, removes a changed
// user's entries as soon as the store says so.
import { checkerSocket } from './auth.js';
import { helperCommand, type Validated } from './validate.js';

// Server level (AuthnCacheSOCache is global): the cache and its revoker. In the Debian layout's site file too,
// outside the vhost; the revoker is written nothing (expr=false), so where it stands makes no difference.
export function loginCache(v: Validated): string[] {
  return [...checker(v), ...cacheServer(v)];
}

// The password checker authn asks (auth.ts checkerOption); server level like the revoker, written nothing.
function checker(v: Validated): string[] {
  if (!v.loginChecker) return [];
  return [
    '',
    '# plexer checker: checks passwords for plexer authn --checker, from a cache of recent checks or with bcrypt threads.',
    `CustomLog "|${helperCommand(v, `checker --socket ${checkerSocket(v)}`)}" "-" "expr=false"`,
  ];
}

function cacheServer(v: Validated): string[] {
  if (!v.loginCacheSocket) return [];
  return [
    '',
    '# Logins cached in memcached (survive a graceful reload); plexer revoke removes a changed user at once.',
    `AuthnCacheSOCache memcache:${v.loginCacheSocket}`,
    `CustomLog "|${helperCommand(v, `revoke --socket ${v.loginCacheSocket} --cache-seconds ${v.authCacheTimeout}`)}" "-" "expr=false"`,
  ];
}
