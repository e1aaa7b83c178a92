// Where Apache keeps a user's cached login, so that plexer can remove it: mod_authn_socache's key is
// "authn-socache:" followed by the lower-case hex of "CONTEXT:USER" (checked against Apache 2.4.71 and memcached,
// ../shared/apache-facts.md). The rendered config names the contexts (render/auth.ts): one for Basic, one shared
// by the login page's handler and the application.
export const LOGIN_CACHE_CONTEXT = { basic: 'plexer', form: 'plexer-form' } as const;

export function loginCacheKey(context: string, user: string): string {
  return `authn-socache:${Buffer.from(`${context}:${user}`, 'utf8').toString('hex')}`;
}

// memcached takes keys of at most 250 bytes: Apache cannot store a longer one either (a very long user name).
const MAX_KEY_BYTES = 250;

// Every key under which the user's login may be cached, whichever way they logged in.
export function loginCacheKeys(user: string): string[] {
  return Object.values(LOGIN_CACHE_CONTEXT)
    .map((context) => loginCacheKey(context, user))
    .filter((key) => key.length <= MAX_KEY_BYTES);
}
