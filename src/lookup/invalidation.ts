import { parseChange } from '../store/changes.js';
import type { PrgMapKind } from '../store/map-queries.js';
import type { Resolver } from './resolver.js';

// Which cached answers a change notification (store/changes.ts) makes wrong, per map.
// A daemon group change can alter the answer for every user in it, so user-keyed maps drop everything then:
// groups change rarely, users often.
export function applyChange(kind: PrgMapKind, resolver: Pick<Resolver, 'evict' | 'clear'>, payload: string): void {
  const change = parseChange(payload);
  if (change?.kind === 'all') return resolver.clear();
  if (kind === 'settings') {
    if (change?.kind === 'group') resolver.evict(change.name);
    return;
  }
  if (change?.kind === 'user') resolver.evict(change.name);
  else if (change?.kind === 'group') resolver.clear();
}
