// The one definition of what a valid name is. migrations/001_schema.sql repeats these patterns in CHECK
// constraints (test/store/names.test.ts proves the two agree), so a row an operator writes with psql can never
// hold a name the helpers would reject or misread.
export const USER_NAME_PATTERN = /^[A-Za-z0-9][A-Za-z0-9._@+-]{0,127}$/;
export const ACCOUNT_NAME_PATTERN = /^[a-z][a-z0-9_-]{0,62}$/;
export const ROLE_NAME_PATTERN = /^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$/;
export const SETTINGS_MODULE_PATTERN = /^[A-Za-z_][A-Za-z0-9_]*(\.[A-Za-z_][A-Za-z0-9_]*){0,15}$/;
// A backend is a mod_proxy target: `unix:/path|fcgi://localhost/`, `http://127.0.0.1:8001/`, `fcgi://…`.
// No whitespace, quotes or control characters, so it is safe inside a rewrite substitution.
// The OS user an account's own slot runs as: `user` or `user:group` (Debian's useradd NAME_REGEX, at most 32
// characters each). Only the shape is checked here and in SQL; which users are acceptable (not root, not
// Apache's own user) depends on the machine and is checked where the user is resolved (src/tenant-users.ts).
export const RUN_AS_PATTERN = /^[a-z_][a-z0-9_-]{0,31}(:[a-z_][a-z0-9_-]{0,31})?$/;
export const BACKEND_PATTERN =
  /^(unix:\/[A-Za-z0-9._\/-]{1,200}\|)?(https?|fcgi|uwsgi|scgi):\/\/[A-Za-z0-9._:\[\]-]{1,255}(\/[A-Za-z0-9._~%\/-]*)?$/;

export const isUserName = (value: string): boolean => USER_NAME_PATTERN.test(value);
// What `user add|move --group` reads as keywords: no account may be called so (migration 010 says the same).
export const ACCOUNT_KEYWORDS: readonly string[] = ['auto', 'none'];
export const isAccountName = (value: string): boolean => ACCOUNT_NAME_PATTERN.test(value) && !ACCOUNT_KEYWORDS.includes(value);
export const isRoleName = (value: string): boolean => ROLE_NAME_PATTERN.test(value);
export const isSettingsModule = (value: string): boolean => SETTINGS_MODULE_PATTERN.test(value);
export const isRunAs = (value: string): boolean => RUN_AS_PATTERN.test(value);
export const isBackend = (value: string): boolean => BACKEND_PATTERN.test(value);
