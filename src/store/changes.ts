// The payloads on the "<schema>_changes" channel (notify_change, migration 001): "u:<user>" (a users row),
// "g:<group>" (a daemon_groups row), "r:<user>" (that user's roles), "*" (a table was truncated).
export type Change = { kind: 'all' } | { kind: 'user' | 'group' | 'roles'; name: string };

const kinds: Record<string, 'user' | 'group' | 'roles'> = { u: 'user', g: 'group', r: 'roles' };

// Undefined for a payload no trigger sends: nothing to drop.
export function parseChange(payload: string): Change | undefined {
  if (payload === '*') return { kind: 'all' };
  const colon = payload.indexOf(':');
  const kind = colon === -1 ? undefined : kinds[payload.slice(0, colon)];
  return kind === undefined ? undefined : { kind, name: payload.slice(colon + 1) };
}
