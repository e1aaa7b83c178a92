import { parseChange } from '../store/changes.js';
import type { PrgMapKind } from '../store/map-queries.js';
import { NO_ANSWER, type Resolver } from './resolver.js';

// Which cached answers a change notification (store/changes.ts) makes wrong, per map.
// A daemon group change can alter the answer of every user in it, and give one to users who had none (a group
// enabled again): the user-keyed maps whose answers begin with the group's name (group: "GROUP", route: "GROUP
// SETTINGS") drop those and every "no answer", and keep the rest, so that adding accounts by the hundred leaves
// the other users' answers cached. The backend map's answers do not name their group: it drops everything.
export function applyChange(kind: PrgMapKind, resolver: Pick<Resolver, 'evict' | 'evictWhere' | 'clear'>, payload: string): void {
  const change = parseChange(payload);
  if (change?.kind === 'all') return resolver.clear();
  if (kind === 'settings') {
    if (change?.kind === 'group') resolver.evict(change.name);
    return;
  }
  if (change?.kind === 'user') resolver.evict(change.name);
  else if (change?.kind === 'group') {
    if (kind === 'backend') return resolver.clear();
    const group = change.name;
    resolver.evictWhere((value) => value === NO_ANSWER || value === group || value.startsWith(`${group} `));
  }
}
