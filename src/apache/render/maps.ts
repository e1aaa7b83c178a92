import { helperCommand, type Validated } from './validate.js';

// A map named plexer_KIND is the program `plexer map KIND` or the dbm: file KIND.map that `plexer sync` writes.
export type MapKind = 'group' | 'settings' | 'backend' | 'route';

export interface MapPlan {
  kinds: MapKind[];
  prg: boolean; // prg: programs (a shared pipe each, watched by the watchdog) rather than dbm: files
}

// The one place that decides which maps a rendering defines; the routing rules and the watchdog follow it.
export function mapPlan(v: Validated): MapPlan {
  const prg = v.mapDir === undefined;
  if (v.routing === 'proxy') return { kinds: ['backend'], prg };
  // A pool's slots learn their settings from the binder: the rules need the account alone.
  if (v.pool) return { kinds: ['group'], prg };
  if (v.mapped.length === 0) return { kinds: ['group'], prg };
  // One route lookup saves a trip through the server-wide prg: lock; dbm: lookups take none and stay two files.
  return { kinds: prg && !v.twoMaps ? ['route'] : ['group', 'settings'], prg };
}

export const mapName = (kind: MapKind): string => `plexer_${kind}`;

function mapSource(v: Validated, kind: MapKind): string {
  return v.mapDir ? `"dbm=gdbm:${v.mapDir}/${kind}.map"` : `"prg:${helperCommand(v, `map ${kind}`)}" ${v.mapUser}`;
}

// The RewriteMap lines of the virtual host.
export function mapDefinitions(v: Validated, plan: MapPlan): string[] {
  const define = (kind: MapKind) => `    RewriteMap ${mapName(kind)} ${mapSource(v, kind)}`;
  if (v.routing === 'proxy') {
    return [
      '    # user -> the backend of their daemon group (a mod_proxy URL); NULL for no user, no group, no backend.',
      define('backend'),
    ];
  }
  const lines = plan.prg ? [] : ['    # dbm: maps kept current by `plexer sync`: stat()ed per lookup, reopened when the file is replaced.'];
  if (plan.kinds.includes('route')) {
    lines.push(
      '    # user -> "GROUP SETTINGS": the group and its settings module in one lookup (the two-map form: twoMaps).',
      define('route'),
    );
  } else if (plan.kinds.includes('settings')) {
    lines.push(define('group'), define('settings'));
  } else {
    lines.push(define('group'), '    # No group takes its settings from the map, so `plexer map settings` is not started.');
  }
  return lines;
}
