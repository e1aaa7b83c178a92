import type { PrgMapKind } from '../store/map-queries.js';
import type { Resolver } from './resolver.js';

// Which cached answers a change notification ("u:alice", "g:tenant1", "r:alice", "*") makes wrong, per map.
// A daemon group change can alter the answer for every user in it, so user-keyed maps drop everything then:
// groups change rarely, users often.
export function applyChange(kind: PrgMapKind, resolver: Pick<Resolver, 'evict' | 'clear'>, payload: string): void {
  const colon = payload.indexOf(':');
  const table = colon === -1 ? payload : payload.slice(0, colon);
  const key = payload.slice(colon + 1);
  if (payload === '*') return resolver.clear();
  if (kind === 'settings') {
    if (table === 'g') resolver.evict(key);
    return;
  }
  if (table === 'u') resolver.evict(key);
  else if (table === 'g') resolver.clear();
}
