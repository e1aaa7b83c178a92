// The slot pool (apache/POOL.md, "Accounts and slots"): a fixed set of mod_wsgi daemon groups, slot-1 … slot-N, each with
// its own OS user, bound to accounts on demand by `plexer binder` (src/pool/). Accounts are not in this config at
// all: adding, removing or changing one never needs a reload; only the pool's size does.
import { poolSlots } from '../../accounts/model.js';
import { ACCOUNT_VARIABLE } from '../../pool/bind-request.js';
import { poolFiles, slotNames } from '../../pool/names.js';
import { alternation, keyedRouting, UNROUTED_SENTINEL } from './keyed-routing.js';
import { mapName, type MapPlan } from './maps.js';
import { refuse } from './refusals.js';
import { helperCommand, type Validated } from './validate.js';
import { slotDaemon } from './wsgi-daemons.js';

export const BIND_PATH = '/_plexer/bind';
const SLOTS_MAP = 'plexer_slots';
// What PROCESS_GROUP holds for an account the bindings map does not name (a word no slot can be).
const UNBOUND = '_unbound_';

type Pool = NonNullable<Validated['pool']>;

// Server level: the slots (poolSlots).
export function poolDaemons(v: Validated, pool: Pool): string[] {
  return [
    '',
    `# ---- mod_wsgi: a pool of ${pool.slots} slots, bound to accounts on demand by plexer binder ---------------------`,
    `WSGISocketPrefix ${v.stateDir}/wsgi`,
    '# One socket name across graceful reloads: a worker of the old generation still finds the slot.',
    'WSGISocketRotation Off',
    '# Never run Python inside Apache\'s own workers: an empty PROCESS_GROUP would otherwise mean "embedded".',
    'WSGIRestrictEmbedded On',
    'WSGILazyInitialization On',
    "# Each slot runs as its own OS user, which owns the bound account's data directory while it is bound (the",
    "# binder hands it over): its processes reach that account's data and nothing else. Every process imports",
    '# Django as soon as it starts (WSGIImportScript), after sealing what it inherited from Apache.',
    ...poolSlots({ slots: pool.slots, prefix: pool.prefix, stateDir: v.stateDir }).flatMap((slot) => slotDaemon(v, slot)),
  ];
}

// The binder runs as a piped logger: Apache starts it as root, restarts it when it dies, and writes it the slot
// of every request a slot served (its idle times). Server level in the standalone layout; in the Debian vhost,
// which has logs of its own and inherits none.
export function binderLog(v: Validated, pool: Pool): string {
  const args = [
    `binder --slots ${pool.slots} --prefix ${pool.prefix} --state-dir ${v.stateDir} --data-dir ${v.dataDir}`,
    `--error-page ${v.errorPagesDir}/503.html --wait-seconds ${pool.waitSeconds} --min-idle-seconds ${pool.minIdleSeconds}`,
    ...(pool.spares !== undefined ? [`--spares ${pool.spares}`] : []),
    ...(pool.spareIdleSeconds !== undefined ? [`--spare-idle-seconds ${pool.spareIdleSeconds}`] : []),
    // The login page's sessions do not survive an internal redirect through the bind location (bind-request.ts).
    ...(v.auth === 'form' ? ['--client-redirect'] : []),
  ].join(' ');
  return `CustomLog "|${helperCommand(v, args)}" "%{PROCESS_GROUP}e" env=PROCESS_GROUP`;
}

export function serverBinderLog(v: Validated): string[] {
  if (!v.pool || v.layout !== 'standalone') return [];
  return ['', '# plexer binder: binds accounts to slots on demand (plexer binder --help).', binderLog(v, v.pool)];
}

export function vhostBinderLog(v: Validated): string[] {
  if (!v.pool || v.layout !== 'debian') return [];
  return [`    ${binderLog(v, v.pool)}`];
}

// Vhost level: the bindings map, and the location the rules send an account without a slot to.
export function poolVhost(v: Validated, pool: Pool): string[] {
  return [
    '    # account -> its slot: a file the binder rewrites at each binding; Apache reads it again when it changes.',
    `    RewriteMap ${SLOTS_MAP} "txt:${poolFiles(v.stateDir).bindings}"`,
    '',
    '    # An account without a slot is sent here internally; the binder binds one and sends the request on. Only',
    '    # as an internal redirect from the rules (the client cannot set the variable): asked for directly, our 403.',
    `    <Location ${BIND_PATH}>`,
    `        Require expr "-n %{ENV:REDIRECT_${ACCOUNT_VARIABLE}}"`,
    '        RequestHeader unset Connection',
    `        ProxyPass "unix:${poolFiles(v.stateDir).socket}|scgi://plexer-binder/" retry=0 timeout=${pool.waitSeconds + 60}`,
    '    </Location>',
  ];
}

// Per-directory rules: the user's account from the map, its slot from the bindings map, else the binder.
export function poolRouting(v: Validated, plan: MapPlan, pool: Pool): string[] {
  const slots = slotNames(pool.slots);
  return [
    "        # 1. The user's account, from the map only, and only from an answer that names this user.",
    `        RewriteRule ^ - [E=PROCESS_GROUP:${UNROUTED_SENTINEL}]`,
    ...keyedRouting({
      map: mapName('group'),
      key: '%{REMOTE_USER}',
      answerVar: 'PLEXER_GROUP_ANSWER',
      target: ACCOUNT_VARIABLE,
      prg: plan.prg,
      noValue: ['        # 2. The map knows no account for this user ("alice="): our 403 page.', refuse(403, 'no-group')],
    }),
    "        # 3. The account's slot. None yet: internally to the binder, which binds one and sends the request on.",
    `        RewriteCond %{ENV:${ACCOUNT_VARIABLE}} ^[a-z]`,
    `        RewriteRule ^ - [E=PROCESS_GROUP:\${${SLOTS_MAP}:%{ENV:${ACCOUNT_VARIABLE}}|${UNBOUND}}]`,
    `        RewriteCond %{ENV:PROCESS_GROUP} =${UNBOUND}`,
    `        RewriteRule ^ ${BIND_PATH} [L]`,
    '        # 4. Anything but a slot (no answer from a dead map): our 503.',
    `        RewriteCond %{ENV:PROCESS_GROUP} !${alternation(slots)}`,
    refuse(503, 'no-answer'),
    '',
    '        # The slot checks, before any application code, that it serves this account (plexer.wsgi).',
    '        WSGIProcessGroup %{ENV:PROCESS_GROUP}',
    '        WSGIApplicationGroup %{GLOBAL}',
    "        # Keep the Basic credentials (the password!) out of the application's environ (the default, stated).",
    '        WSGIPassAuthorization Off',
    '        # Only the slots may be selected from here.',
    `        WSGIRestrictProcess ${slots.join(' ')}`,
    '    </Directory>',
  ];
}
