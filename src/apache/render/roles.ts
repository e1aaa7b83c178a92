import { requireUnlocked } from './auth.js';
import type { Validated } from './validate.js';

// Role locations (wsgi routing): a <Location> under the mount that also needs one of some roles.
export function roleLocationSections(v: Validated): string[] {
  const lines: string[] = [];
  for (const r of v.roleLocations) {
    lines.push(
      '',
      `    # ${r.path} also needs one of the roles ${r.roles.join(', ')}. Authentication and routing still come from`,
      '    # the <Directory> above (a Location merges after it and replaces only its Require).',
      '    # COST: GroupExternal forks the authz helper on EVERY request (mod_authnz_external has no group cache).',
      '    # Cheaper alternatives: `Require user alice bob` rendered from the database (no fork, needs a graceful',
      '    # on change); AuthGroupFile + `Require group ROLE` with a file plexer regenerates (mod_authz_groupfile,',
      '    # parsed per request, no fork); or `Require dbd-group ROLE` (mod_authz_dbd over a mod_dbd pgsql pool).',
      `    <Location ${r.path}>`,
      '        # mod_authnz_external does not merge its per-directory settings: a <Location> that sets only',
      '        # GroupExternal loses AuthExternal from the <Directory> ("No AuthExternal name has been set", 500).',
      '        AuthExternal plexer',
      '        AuthExternalProvideCache On',
      '        GroupExternal plexer_roles',
      ...requireUnlocked(v.lockDir, `external-group ${r.roles.join(' ')}`).map((line) => `        ${line}`),
      '        # Without this an authenticated user lacking the role gets 401 (Basic re-prompt), not our 403.',
      '        AuthzSendForbiddenOnFailure On',
      '    </Location>',
    );
  }
  return lines;
}
