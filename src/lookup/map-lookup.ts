import { isGroupName, isUserName } from '../names.js';
import type { MapKind } from '../store/map-queries.js';
import type { Answer, Resolver } from './resolver.js';

// An invalid key (empty, control characters, spaces, too long, non-ASCII) is answered NULL here and never
// reaches the cache or SQL.
export function keyValidator(kind: MapKind): (key: string) => boolean {
  return kind === 'settings' ? isGroupName : isUserName;
}

export function createMapLookup(kind: MapKind, resolver: Resolver): (key: string) => Answer | Promise<Answer> {
  const isValidKey = keyValidator(kind);
  return (key) => (isValidKey(key) ? resolver.resolve(key) : null);
}
