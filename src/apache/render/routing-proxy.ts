import { applicationAuth } from './auth.js';
import { keyedRouting, unanswered, UNROUTED_SENTINEL, userNameGuard } from './keyed-routing.js';
import { mapName, type MapPlan } from './maps.js';
import { SESSION_COOKIE_NAME } from './options.js';
import { refuse } from './refusals.js';
import type { Validated } from './validate.js';

// The request header that tells an http:// backend who the user is (fcgi backends also get REMOTE_USER).
export const USER_HEADER = 'X-Plexer-User';
// The group's token (migration 008), which only Apache sends: a backend serves a request only when it carries
// its own (fcgi backends get it as PLEXER_BACKEND_TOKEN too). Anyone else on the host can reach a TCP port.
export const TOKEN_HEADER = 'X-Plexer-Token';

// The client's copies of one of our headers, also with "_" for "-" (some frameworks fold them together).
function unsetClientCopies(header: string): string[] {
  const variants = new Set([header.replace(/-/g, '_'), header.replace(/-(?=[^-]*$)/, '_'), header.replace('-', '_')]);
  return [...variants].map((name) => `        RequestHeader unset ${name}`);
}

// The backend answers the proxy rule accepts (the store's CHECK allows more: https, uwsgi, scgi; those get our
// 503 here because their modules are not loaded): unix:/socket|http://localhost or |fcgi://localhost, or
// http:// or fcgi:// HOST[:PORT], each with an optional path. Kept in step with BACKEND_PATTERN (src/names.ts).
export const PROXY_BACKEND_REGEX =
  '^(unix:/[A-Za-z0-9._/-]{1,200}\\|(http|fcgi)://localhost|(http|fcgi)://([A-Za-z0-9.-]{1,253}|\\[[0-9A-Fa-f:]{2,39}\\])(:[0-9]{1,5})?)(/[A-Za-z0-9._~%/-]*)?$';

// Proxy routing: the mount aliased to an empty directory whose rules proxy to the user's backend.
export function proxyRouting(v: Validated, plan: MapPlan): string[] {
  const lines = [
    "    # ---- Routing: mod_proxy to the user's own backend (map backend) ----------------------------------",
    '    # Rewrite rules inside <Location> are unsupported and vhost rules run before authentication, so the',
    `    # mount is aliased to an empty directory whose per-directory rules run after it (REMOTE_USER is set).`,
    `    Alias ${v.mountPath} ${v.proxyMountDir}`,
    '    # Backends see the Host the client asked for (their redirects and absolute URLs stay on this server).',
    '    ProxyPreserveHost On',
    `    ProxyTimeout ${v.proxyTimeout}`,
    `    <Directory ${v.proxyMountDir}>`,
    '        # mod_rewrite refuses per-directory rules (403, AH00670) unless FollowSymLinks or',
    '        # SymLinksIfOwnerMatch is on here.',
    '        Options SymLinksIfOwnerMatch',
    ...applicationAuth(v, '        '),
    '',
    '        RewriteEngine On',
    ...userNameGuard(),
    "        # 1. The backend of the user's group, from the map only, and only from an answer that names this user.",
    `        RewriteRule ^ - [E=PLEXER_BACKEND:${UNROUTED_SENTINEL}]`,
    ...keyedRouting({
      map: mapName('backend'),
      key: '%{REMOTE_USER}',
      answerVar: 'PLEXER_BACKEND_ANSWER',
      target: 'PLEXER_BACKEND',
      restTarget: 'PLEXER_BACKEND_TOKEN',
      // "BACKEND;TOKEN" (store/map-queries.ts): a backend the rules route holds no ";", and dbm: files end a
      // value at the first space.
      parts: '([^;]+);([0-9a-f]{32})',
      prg: plan.prg,
      noValue: [
        '        # 2. No backend for this user (no group, disabled user or group, group without a backend): our 403.',
        refuse(403, 'no-group'),
      ],
    }),
    '        # 3. Only the URL shapes we proxy to (anything else, or "" from a dead map: our 503). The store\'s',
    '        #    CHECK constraint already limits the column; this keeps a bad value from reaching mod_proxy.',
    ...unanswered('PLEXER_BACKEND'),
    `        RewriteCond %{ENV:PLEXER_BACKEND} !${PROXY_BACKEND_REGEX}`,
    refuse(503, 'bad-backend'),
    '        # 4. Proxy: backend (trailing slash dropped) + "/" + the path below the mount; the query string is',
    '        #    appended by mod_rewrite. The authority comes from the map answer alone, so the request path',
    "        #    cannot change the backend. A backend that does not answer: mod_proxy's 503 -> our 503 page.",
    '        RewriteCond %{ENV:PLEXER_BACKEND} ^(.*?)/?$',
    '        RewriteRule ^(.*)$ %1/$1 [P,L]',
    '',
    "        # What the backend learns about the user comes from authentication only: the client's copies of the",
    `        # headers (also with "_" for "-", which some frameworks fold together) are dropped, ours are set.`,
    ...unsetClientCopies(USER_HEADER),
    `        RequestHeader set ${USER_HEADER} "expr=%{REMOTE_USER}"`,
    "        # And that it is Apache asking: the group's own token (from the map), which no client and no other",
    '        # tenant knows. The backend compares it with its own and refuses anything else.',
    ...unsetClientCopies(TOKEN_HEADER),
    `        RequestHeader set ${TOKEN_HEADER} "expr=%{ENV:PLEXER_BACKEND_TOKEN}"`,
    `        # mod_proxy drops every header the client names in Connection ("Connection: ${USER_HEADER}" would send`,
    "        # the backend no user at all): the client's Connection header goes first.",
    '        RequestHeader unset Connection',
    '        # Never forward the Basic credentials (the password) to a backend.',
    '        RequestHeader unset Authorization',
  ];
  if (v.auth === 'form') {
    lines.push(
      '        # Nor the session cookie (it holds the encrypted password): the backend sees the other cookies only.',
      `        RequestHeader edit* Cookie "(^|;\\s*)${SESSION_COOKIE_NAME}=[^;]*" ""`,
    );
  }
  lines.push('    </Directory>');
  return lines;
}
