// Apache's question to the binder, over SCGI: a request whose account has no slot was redirected internally to
// the bind location (render/pool.ts); its variables arrive prefixed REDIRECT_ (set by the routing rules, never by
// the client: a client asking for the bind location itself has none and gets a 404). Once the account is bound,
// a GET or HEAD goes on at once: a 200 with a local Location is mod_proxy_scgi's internal redirect, which runs the
// request again (the bindings map now names the slot). Other methods get a 307 to the same URL, which clients
// repeat with their body (the body came here and is gone). With the login page (clientRedirect) every method gets
// the 307: mod_session took the session cookie off the request when it first read it, and the request that the
// internal redirect would run again authenticates anew (it follows one of another configuration, the bind
// location's), so it would find no session; the browser's repeat carries its cookie.
import type { Logger } from '../log.js';
import { isAccountName } from '../names.js';
import type { ScgiRequest, ScgiResponse } from '../scgi/server.js';
import type { Binder } from './binder.js';

export const ACCOUNT_VARIABLE = 'PLEXER_ACCOUNT';
const RETRY_AFTER_SECONDS = '5';

export function bindRequestHandler(
  binder: Binder,
  page: Buffer,
  log: Logger,
  o: { clientRedirect?: boolean } = {},
): (request: ScgiRequest) => Promise<ScgiResponse> {
  const unavailable = (retryAfter: string): ScgiResponse => ({
    status: 503,
    headers: [
      ['Content-Type', 'text/html; charset=utf-8'],
      ['Retry-After', retryAfter],
      ['Cache-Control', 'no-store'],
    ],
    body: page,
  });
  return async ({ env }) => {
    const account = env.get(`REDIRECT_${ACCOUNT_VARIABLE}`) ?? '';
    if (!isAccountName(account)) return { status: 404, headers: [['Content-Type', 'text/plain']], body: 'not found\n' };
    // The client's own request line, still encoded: nothing in it can break the header it goes into.
    const uri = env.get('REQUEST_URI') ?? '';
    // "//host/…" would make the 307 a redirect to another site.
    if (!/^\/(?!\/)[\x21-\x7e]{0,8000}$/.test(uri))
      return { status: 400, headers: [['Content-Type', 'text/plain']], body: 'bad request\n' };
    // Sent here a second time for one request: its slot went to another account meanwhile (the pool is that
    // busy). No loop: try again later.
    if (env.has(`REDIRECT_REDIRECT_REDIRECT_${ACCOUNT_VARIABLE}`)) return unavailable('1');
    const result = await binder.bind(account);
    if (result.kind === 'busy') {
      log.warn('every slot busy', { account });
      return unavailable(RETRY_AFTER_SECONDS);
    }
    if (result.kind === 'refused') {
      log.warn('not bound', { account, reason: result.reason });
      return unavailable('30');
    }
    const method = env.get('REQUEST_METHOD');
    if (!o.clientRedirect && (method === 'GET' || method === 'HEAD')) return { status: 200, headers: [['Location', uri]] };
    return {
      status: 307,
      headers: [
        ['Location', uri],
        ['Cache-Control', 'no-store'],
      ],
    };
  };
}
