import { lockFileChecks } from '../../lockout/lock-files.js';
import { LOGIN_CACHE_CONTEXT } from '../../logins/cache-key.js';
import { LOGIN_PAGE_PATH } from './options.js';
import { helperCommand, type Validated } from './validate.js';

// The authenticator of the form login handler (form.ts): every posted password is checked by it, none by the cache.
export const LOGIN_AUTHENTICATOR = 'plexer_login';

// Where plexer checker listens (loginChecker): in the state directory, which www-data traverses.
export const checkerSocket = (v: Validated): string => `${v.stateDir}/checker.sock`;
const checkerOption = (v: Validated): string => (v.loginChecker ? ` --checker ${checkerSocket(v)}` : '');

// Vhost level: the authenticator and the role checker, both mod_authnz_external pipes to plexer's helpers.
export function authDefinitions(v: Validated): string[] {
  return [
    '',
    v.auth === 'form'
      ? '    # ---- Authentication: a login form (mod_auth_form) checked by mod_authnz_external, cached in shared memory'
      : '    # ---- Authentication: Basic via mod_authnz_external, results cached in shared memory --------------',
    '    # pipe: the helper reads "user\\npassword\\n" on stdin; exit 0 accepts. One fork+exec per uncached check',
    '    # and Apache waits with no timeout, so the helper bounds its own run time.',
    v.auth === 'form'
      ? "    # --counted-by-log: its refusals are 401s, which `plexer lockout` counts along with the cache's own."
      : "    # --counted-by-log: its refusals are 401s, which `plexer lockout` counts along with the cache's own (the 401",
    ...(v.auth === 'form' ? [] : ['    # page comes from it: vhost.ts refusalPage).']),
    '    # --lock-dir: a refusal given without comparing the password (out of time, the store unreachable) is no',
    '    # guess: authn leaves an excuse there and the lockout does not count it.',
    ...(v.loginChecker
      ? [
          '    # --checker: authn asks plexer checker (a long-running process) and loads nothing else; if it is down,',
          '    # authn checks by itself.',
        ]
      : []),
    `    DefineExternalAuth plexer pipe "${helperCommand(v, `authn --counted-by-log --lock-dir ${v.lockDir}${checkerOption(v)}`)}"`,
    ...(v.auth === 'form'
      ? [
          "    # The login handler's own: it counts a refusal in the store before it answers, and refuses a locked user,",
          '    # address or pair without checking the password (the same answer for a right and a wrong one).',
          `    DefineExternalAuth ${LOGIN_AUTHENTICATOR} pipe "${helperCommand(v, `authn${checkerOption(v)}`)}"`,
        ]
      : []),
    '    # Roles: "user\\nrole1 role2\\n" on stdin, exit 0 if the user has any of them.',
    `    DefineExternalGroup plexer_roles pipe "${helperCommand(v, 'authz')}"`,
  ];
}

// Authentication lines for the section that serves the application.
export function applicationAuth(v: Validated, indent: string): string[] {
  const lines =
    v.auth === 'basic'
      ? [
          'AuthType Basic',
          `AuthName "${v.authRealm}"`,
          '# socache first: a cached success skips the fork of the external helper.',
          'AuthBasicProvider socache external',
        ]
      : [
          'AuthType form',
          `AuthName "${v.authRealm}"`,
          '# socache first: a cached success skips the fork of the external helper. mod_authnz_external does not',
          '# merge per-directory settings, so every section that authenticates repeats AuthExternal.',
          'AuthFormProvider socache external',
          '# mod_auth_form takes credentials posted to ANY protected URL, not only to the login handler, and here they',
          '# would go to the cache and be refused uncounted: guessing without a lockout. Under these field names, a',
          '# secret of this install, only the login page (which posts to the handler) can log anyone in.',
          `AuthFormUsername plexer-u-${v.formFieldSecret}`,
          `AuthFormPassword plexer-p-${v.formFieldSecret}`,
        ];
  lines.push('AuthExternal plexer', 'AuthExternalProvideCache On', 'AuthnCacheProvideFor external');
  if (v.auth === 'form') {
    lines.push(
      "# One cache for the login handler and the application (the default context is the section's path).",
      `AuthnCacheContext ${LOGIN_CACHE_CONTEXT.form}`,
    );
  } else {
    lines.push(
      `# A context of its own: the cache's key for a user is known (plexer revoke removes it).`,
      `AuthnCacheContext ${LOGIN_CACHE_CONTEXT.basic}`,
    );
  }
  lines.push(
    ...(v.loginCacheSocket
      ? [
          '# Only successes are cached (unsalted SHA1 of the password, in memcached: it outlives a reload). plexer revoke',
          "# removes a changed user's entries at once; this bounds an entry it could not remove.",
        ]
      : [
          '# Only successes are cached (unsalted SHA1 of the password, in shared memory). A changed or revoked',
          `# password keeps working for up to this many seconds.`,
        ]),
    `AuthnCacheTimeout ${v.authCacheTimeout}`,
  );
  if (v.auth === 'form') {
    lines.push(
      '# The session cookie carries user + password; re-checked by the providers above on every request.',
      'Session On',
      '# No (valid) session: redirect to the login page instead of a 401.',
      `AuthFormLoginRequiredLocation ${LOGIN_PAGE_PATH}`,
    );
  }
  lines.push(...requireUnlocked(v.lockDir, 'valid-user'));
  return lines.map((line) => indent + line);
}

// `requirement`, and no lockout in force for this user, address or pair (files kept by `plexer lockout` in
// lockDir). Unindented: the caller places it.
export function requireUnlocked(lockDir: string, requirement: string): string[] {
  return [
    '# Refused while a lockout holds for this user, address or pair (files kept by `plexer lockout`): a stat each.',
    '<RequireAll>',
    `    Require ${requirement}`,
    `    Require expr "${lockFileChecks(lockDir)}"`,
    '</RequireAll>',
  ];
}
