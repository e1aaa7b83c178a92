import { applicationAuth } from './auth.js';
import { alternation, keyedRouting, unanswered, UNROUTED_SENTINEL, userNameGuard } from './keyed-routing.js';
import { mapName, type MapPlan } from './maps.js';
import type { Validated } from './validate.js';
import { poolRouting } from './pool.js';
import { refuse } from './refusals.js';

const MODULE_REGEX = '^[A-Za-z_][A-Za-z0-9_]*(\\.[A-Za-z_][A-Za-z0-9_]*)*$';

// wsgi and prefix routing: the WSGI script's <Directory>, whose per-directory rules pick the slot of the user's
// account (and in prefix mode first move the request under the user's own URL prefix). Without a pool the map's
// answer, the account, is its own slot's name (ownSlotName): the rules compare it with the bound slots' names and
// key the settings map with it.
export function wsgiRouting(v: Validated, plan: MapPlan): string[] {
  const { bindings, disabled, mapped } = v;
  const slotAlternation = (bound: typeof bindings) => alternation(bound.map((b) => b.slot.name));
  const routeMap = plan.kinds.includes('route');
  const lines = [`    WSGIScriptAlias ${v.mountPath} ${v.wsgiScript}`];
  if (v.routing === 'prefix') {
    lines.push(
      `    # Prefix mode: ${v.mountPath}/x is rewritten internally to ${v.userPrefix}/USER${v.mountPath}/x (below), which is served`,
      '    # by the same script with SCRIPT_NAME ' + `${v.userPrefix}/USER${v.mountPath}: distinct, cacheable URLs per user.`,
      `    WSGIScriptAliasMatch ^${v.userPrefix}/[A-Za-z0-9._@+-]+${v.mountPath}(?=/|$) ${v.wsgiScript}`,
    );
  }
  lines.push(
    `    <Directory ${v.wsgiDir}>`,
    '        # mod_rewrite refuses per-directory rules (403, AH00670) unless FollowSymLinks or',
    '        # SymLinksIfOwnerMatch is on here.',
    '        Options SymLinksIfOwnerMatch',
    ...applicationAuth(v, '        '),
    '',
    '        # Per-directory rules run in the fixup phase, AFTER authentication: REMOTE_USER is set here',
    '        # (at vhost level it is still empty; %{LA-U:REMOTE_USER} would authenticate twice).',
    '        RewriteEngine On',
    ...userNameGuard(),
  );
  if (v.routing === 'prefix') {
    const m = v.mountPath.replace(/\./g, '\\.');
    lines.push(
      `        # P1. ${v.mountPath}/x: internal redirect to the AUTHENTICATED user's prefix (the query string is kept).`,
      `        RewriteCond %{REQUEST_URI} ^${m}(/.*)?$`,
      `        RewriteRule ^ ${v.userPrefix}/%{REMOTE_USER}${v.mountPath}%1 [L]`,
      `        # P2. ${v.userPrefix}/NAME/…, redirected or asked for directly: NAME must be the authenticated user, else our`,
      '        #     403. Checked on the final URL, so no encoding or dot-segment trick reaches another prefix.',
      `        RewriteCond "%{REMOTE_USER}:%{REQUEST_URI}" !^([^:/]+):${v.userPrefix}/\\1${m}(/|$)`,
      refuse(403, 'wrong-prefix'),
    );
  }
  if (v.pool) return [...lines, ...poolRouting(v, plan, v.pool)];
  lines.push(
    '        # 1. The user\'s group, from the map only, and only from an answer that names this user ("alice=alpha").',
    `        RewriteRule ^ - [E=PROCESS_GROUP:${UNROUTED_SENTINEL}]`,
    ...keyedRouting({
      map: mapName(routeMap ? 'route' : 'group'),
      key: '%{REMOTE_USER}',
      answerVar: 'PLEXER_GROUP_ANSWER',
      target: 'PROCESS_GROUP',
      ...(routeMap ? { restTarget: 'PLEXER_SETTINGS' } : {}),
      prg: plan.prg,
      noValue: ['        # 2. The map knows no group for this user ("alice="): our 403 page.', refuse(403, 'no-group')],
    }),
  );
  if (disabled.length > 0) {
    lines.push(
      '        # 3. A disabled tenant: our 503 page.',
      `        RewriteCond %{ENV:PROCESS_GROUP} ${alternation(disabled.map((a) => a.name))}`,
      refuse(503, 'group-disabled'),
    );
  }
  if (bindings.length > 0) {
    lines.push(
      '        # 4. Anything but an enabled, configured group (empty answer from a dead map, a group added to the',
      '        #    database but not yet rendered here): our 503, never mod_wsgi\'s "No WSGI daemon process" 500.',
      ...unanswered('PROCESS_GROUP'),
      `        RewriteCond %{ENV:PROCESS_GROUP} !${slotAlternation(bindings)}`,
      refuse(503, 'group-not-configured'),
    );
  } else {
    lines.push(
      '        # 4. No enabled group at all: every request gets our 503.',
      ...unanswered('PROCESS_GROUP'),
      refuse(503, 'group-not-configured'),
    );
  }
  const fixed = bindings.filter((b) => b.account.settingsModule !== null);
  if (fixed.length > 0) lines.push('        # 5. Settings module, rendered in (no map lookup). The WSGI script pins it per process.');
  for (const { account, slot } of fixed) {
    lines.push(
      `        RewriteCond %{ENV:PROCESS_GROUP} =${slot.name}`,
      `        RewriteRule ^ - [E=PLEXER_SETTINGS:${account.settingsModule}]`,
    );
  }
  if (mapped.length > 0 && routeMap) {
    lines.push(
      '        # 6. The groups rendered with settingsModule null take it from the route answer (step 1); none there: our 503.',
      `        RewriteCond %{ENV:PROCESS_GROUP} ${slotAlternation(mapped)}`,
      `        RewriteCond %{ENV:PLEXER_SETTINGS} !${MODULE_REGEX}`,
      refuse(503, 'no-settings'),
    );
  } else if (mapped.length > 0) {
    lines.push(
      '        # 6. Settings module from the settings map for the groups rendered with settingsModule null, only from',
      '        #    an answer that names this group; anything else (no value, a dead map): our 503.',
      ...keyedRouting({
        map: mapName('settings'),
        key: '%{ENV:PROCESS_GROUP}',
        answerVar: 'PLEXER_SETTINGS_ANSWER',
        target: 'PLEXER_SETTINGS',
        prg: plan.prg,
        conds: [`        RewriteCond %{ENV:PROCESS_GROUP} ${slotAlternation(mapped)}`],
      }),
      `        RewriteCond %{ENV:PROCESS_GROUP} ${slotAlternation(mapped)}`,
      `        RewriteCond %{ENV:PLEXER_SETTINGS} !${MODULE_REGEX}`,
      refuse(503, 'no-settings'),
    );
  }
  lines.push(
    "        # The root of the tenants' data directories; the WSGI script appends the group that really serves the",
    "        # request (mod_wsgi.process_group), so a tenant's Django only ever opens DATA-ROOT/ITS-GROUP.",
    `        SetEnv PLEXER_DATA_ROOT ${v.dataDir}`,
    '',
    '        # Resolved in the handler phase, after the rules above. An unset variable would be used literally',
    '        # (500 "No WSGI daemon process called …"); an empty one would mean embedded (refused above).',
    '        WSGIProcessGroup %{ENV:PROCESS_GROUP}',
    '        # One interpreter per daemon process (Django is not multi-interpreter safe; C extensions prefer it).',
    '        WSGIApplicationGroup %{GLOBAL}',
    "        # Keep the Basic credentials (the password!) out of the application's environ (the default, stated).",
    '        WSGIPassAuthorization Off',
    "        # Only the pool's groups may be selected from here (explicit names, no wildcards).",
    bindings.length > 0
      ? `        WSGIRestrictProcess ${bindings.map((b) => b.slot.name).join(' ')}`
      : // With no slot WSGIRestrictProcess still needs a name: one that no slot can have (no account name either).
        `        WSGIRestrictProcess ${UNROUTED_SENTINEL}`,
    '        # The WSGI script gets nothing the client can forge: PROCESS_GROUP/PLEXER_SETTINGS come only from',
    '        # the rules above; headers arrive as HTTP_*, cookies and query strings never become variables.',
    '    </Directory>',
  );
  return lines;
}
