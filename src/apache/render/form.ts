import { LOGIN_CACHE_CONTEXT } from '../../logins/cache-key.js';
import { LOGIN_AUTHENTICATOR } from './auth.js';
import { LOGIN_HANDLER_PATH, LOGIN_PAGE_PATH, LOGOUT_PATH, SESSION_COOKIE_NAME } from './options.js';
import { refuse } from './refusals.js';
import type { Validated } from './validate.js';

// Form mode, vhost level: where sessions are kept and the key they are encrypted with.
export function sessions(v: Validated): string[] {
  if (v.auth !== 'form') return [];
  return [
    '',
    ...sessionStoreLines(v),
    v.sessionPassphraseFile !== undefined
      ? `    # Read by the root parent at start; keep it root-only (it stays out of this config, though every daemon's memory, a copy of Apache's, holds it).`
      : '    # Inline passphrase (tests): anyone who can read this file can decrypt sessions. Prefer a passphrase file.',
    v.sessionPassphraseFile !== undefined
      ? `    SessionCryptoPassphraseFile "${v.sessionPassphraseFile}"`
      : `    SessionCryptoPassphrase ${v.sessionPassphrase}`,
    `    SessionMaxAge ${v.sessionMaxAge}`,
  ];
}

// The session (user + password, as mod_auth_form stores them) is encrypted and MACed with the passphrase
// (aes256, mod_session_crypto) wherever it is kept: a tampered, forged or foreign-key session does not decrypt
// and counts as none (-> login page). A valid one is still only a claim: mod_auth_form re-checks its user +
// password with the providers on every request, and only the REMOTE_USER that check yields chooses the instance.
function sessionStoreLines(v: Validated): string[] {
  // Secure whenever the browser talks https to us, directly or through a declared TLS proxy.
  const attributes = `path=/;HttpOnly;SameSite=Lax${v.httpsToClient ? ';Secure' : ''}`;
  const d = v.sessionDatabase;
  if (d === undefined) {
    return [
      '    # Cookie store: the cookie is the whole session. A copied cookie stays valid until it expires',
      `    # (SessionMaxAge, refreshed on each request) or the password changes; logout replaces the browser's copy only.`,
      `    SessionCookieName ${SESSION_COOKIE_NAME} ${attributes}`,
    ];
  }
  const fn = (name: string) => `${d.schema}.${name}`;
  return [
    '    # Database store (mod_session_dbd): the cookie holds a random key, the session row lives in PostgreSQL',
    '    # (only a SHA-256 of the key is stored). Logout deletes the row, which ends every copy of the cookie.',
    "    # mod_dbd connects as the helpers' role, which may call the session functions of migration 006 and",
    '    # nothing else that writes. The connection string is in this file, which the run user can read: prefer',
    '    # pg_passfile to pg_password. A connection per request (DBDPersist Off): a kept one outlives a restart of',
    '    # PostgreSQL in a child that was idle meanwhile, and apr_dbd_pgsql then reconnects it without its prepared',
    '    # statements, so that child would answer every session with "prepared statement does not exist" until it',
    '    # exits (test/apache/form-outage, with more children than the outage reached).',
    '    DBDriver pgsql',
    '    DBDPersist Off',
    `    DBDParams "${d.conninfo}"`,
    `    DBDPrepareSQL "SELECT ${fn('session_load')}(%s, %lld)" plexer_session_select`,
    `    DBDPrepareSQL "SELECT * FROM ${fn('session_update')}(%s, %lld, %s, %s)" plexer_session_update`,
    `    DBDPrepareSQL "SELECT * FROM ${fn('session_insert')}(%s, %lld, %s)" plexer_session_insert`,
    `    DBDPrepareSQL "SELECT * FROM ${fn('session_delete')}(%s)" plexer_session_delete`,
    `    SessionDBDCookieName ${SESSION_COOKIE_NAME} ${attributes}`,
    '    SessionDBDSelectLabel plexer_session_select',
    '    SessionDBDUpdateLabel plexer_session_update',
    '    SessionDBDInsertLabel plexer_session_insert',
    '    SessionDBDDeleteLabel plexer_session_delete',
  ];
}

// Form mode: the login page, the handler it posts to (with its CSRF check and fixed redirect) and logout.
export function loginPieces(v: Validated): string[] {
  if (v.auth !== 'form') return [];
  const clientScheme = v.httpsToClient ? 'https' : 'http';
  return [
    '    # ---- Form login pieces: the static page, the handler it posts to, and logout ------------------------',
    `    Alias /_plexer/login/ ${v.loginPagesDir}/`,
    `    <Directory ${v.loginPagesDir}>`,
    '        Options None',
    '        Require all granted',
    '    </Directory>',
    '    # Our pages refuse to be framed (clickjacking the login form).',
    '    <LocationMatch "^/_plexer/">',
    '        Header always set X-Frame-Options DENY',
    '        Header always set Content-Security-Policy "frame-ancestors \'none\'"',
    '    </LocationMatch>',
    '    # Login CSRF: a post to the handler from another site (a form that would log the victim in as the',
    '    # attacker) is refused with our 403. Browsers say where a request comes from in Sec-Fetch-Site and, on',
    '    # POST, Origin; neither can be set by a page. A client sending neither (curl, old browsers) is let through:',
    "    # it is no victim's browser. Checked before any other phase, so the handler never sees the post.",
    `    RewriteCond %{REQUEST_URI} ^${LOGIN_HANDLER_PATH}(/|$)`,
    `    RewriteCond expr "%{HTTP:Sec-Fetch-Site} in {'cross-site', 'same-site'} || (-n %{HTTP:Origin} && %{HTTP:Origin} != '${clientScheme}://%{HTTP_HOST}')"`,
    refuse(403, 'cross-site-login', '    '),
    '    # login.html posts httpd_username + httpd_password here. Success: a fresh session and a redirect to a',
    '    # FIXED location. Failure: back to the login page. No Require: the handler itself authenticates the posted',
    '    # credentials.',
    `    <Location ${LOGIN_HANDLER_PATH}>`,
    '        SetHandler form-login-handler',
    '        AuthType form',
    `        AuthName "${v.authRealm}"`,
    '        # Every posted password goes to plexer authn, never to the cache: mod_authn_socache would refuse a cached',
    "        # user's wrong password itself, uncounted, and accept the right one while a lockout holds. A success is",
    '        # cached for the requests that follow.',
    '        AuthFormProvider external',
    `        AuthExternal ${LOGIN_AUTHENTICATOR}`,
    '        AuthExternalProvideCache On',
    '        AuthnCacheProvideFor external',
    `        AuthnCacheContext ${LOGIN_CACHE_CONTEXT.form}`,
    `        AuthnCacheTimeout ${v.authCacheTimeout}`,
    '        Session On',
    "        # mod_auth_form redirects a success to the form's httpd_location field when one is posted, even to another",
    '        # site (an open redirect), and no directive turns that off; mod_headers cannot reach the Location of a',
    '        # redirect Apache answers as an error. So every 302 of the handler becomes a redirect to OUR fixed,',
    '        # absolute URL (an ErrorDocument URL replaces the Location), and a failure is no redirect at all: a 401',
    '        # (no AuthFormLoginRequiredLocation here) answered with the login page, which then says it failed.',
    `        AuthFormLoginSuccessLocation ${v.loginSuccessPath}`,
    `        ErrorDocument 302 ${clientScheme}://%{HTTP_HOST}${v.loginSuccessPath}`,
    `        ErrorDocument 401 ${LOGIN_PAGE_PATH}`,
    '    </Location>',
    '    # Logout empties the session and sends it back expiring at once. AuthName is REQUIRED here: mod_auth_form',
    '    # keys the session entries by it ("plexer-user", "plexer-pw"); without it the handler clears other keys,',
    '    # answers 307 as if it worked and the returned cookie still logs the user in.',
    `    <Location ${LOGOUT_PATH}>`,
    '        SetHandler form-logout-handler',
    '        AuthType form',
    `        AuthName "${v.authRealm}"`,
    '        Session On',
    '        SessionMaxAge 1',
    `        AuthFormLogoutLocation ${LOGIN_PAGE_PATH}?logged-out=1`,
    '    </Location>',
    '',
  ];
}
