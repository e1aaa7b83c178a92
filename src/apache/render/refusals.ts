// Why a request got one of our error pages, named by the rule that refused it and written to the access log as
// reason= (apache/INSTALL.md, "Logs"), next to the user: an operator asked "why did alice get a 503 at
// 10:42" finds the answer in one line. Every refusing rule of the config is written here, one reason each.

export const REASON_VARIABLE = 'PLEXER_REASON';

/** The reasons the config's own rules give, and what an operator reads into each. */
export const REFUSAL_REASONS = {
  'bad-user-name': 'a user name the store could not hold: never looked up (403)',
  'wrong-prefix': "a URL under another user's prefix (403)",
  'no-group': 'the store knows no group (or no backend) for this user (403)',
  'group-disabled': "the user's group is disabled (503)",
  'no-answer': 'no answer from the map in time: the store slow or down, or the map restarting (503, try again)',
  'group-not-configured': 'a group this config does not define yet: re-render and reload (503)',
  'no-settings': 'no settings module for the group (503)',
  'bad-backend': 'a backend the proxy rules cannot route (503)',
  'address-locked': 'the client address is locked out by failed logins (429)',
  'cross-site-login': 'a login posted from another site (403)',
} as const;

export type RefusalReason = keyof typeof REFUSAL_REASONS;

// What the error page's request logs when no rule of ours refused: Apache's authentication, a Require, or the
// application itself answered with the status.
export const STATUS_REASONS: Readonly<Record<401 | 403 | 500 | 503, string>> = {
  401: 'login-refused',
  403: 'forbidden',
  500: 'backend-error',
  503: 'backend-unavailable',
};

/** `RewriteRule ^ - [F]` (403) or `[R=STATUS]`, naming its reason. */
export function refuse(status: 403 | 429 | 503, reason: RefusalReason, indent = '        '): string {
  const flag = status === 403 ? 'F' : `R=${status}`;
  return `${indent}RewriteRule ^ - [${flag},E=${REASON_VARIABLE}:${reason}]`;
}

// Vhost level, for the error page Apache redirects to (mod_rewrite runs again for it): the refused request's
// reason, which Apache hands over as REDIRECT_PLEXER_REASON, else one from the status.
export function reasonOfErrorPage(indent = '    '): string[] {
  const lines = [
    `${indent}# The access log's reason= (apache/INSTALL.md, "Logs"): the refusing rule's, else the status's.`,
    `${indent}RewriteCond %{ENV:REDIRECT_${REASON_VARIABLE}} ^(.+)$`,
    `${indent}RewriteRule ^/_plexer/ - [E=${REASON_VARIABLE}:%1]`,
  ];
  for (const [status, reason] of Object.entries(STATUS_REASONS)) {
    lines.push(
      `${indent}RewriteCond %{ENV:REDIRECT_${REASON_VARIABLE}} ^$`,
      `${indent}RewriteCond %{ENV:REDIRECT_STATUS} =${status}`,
      `${indent}RewriteRule ^/_plexer/ - [E=${REASON_VARIABLE}:${reason}]`,
    );
  }
  return lines;
}
