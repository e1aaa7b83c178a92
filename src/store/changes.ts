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

// The payloads on the "<schema>_lockouts" channel (migration 005): "SUBJECT EPOCH_MS" when a lockout starts, is
// extended or ends early (a time already past), "*" after a TRUNCATE; the time follows the last space.
export type LockoutChange = { kind: 'all' } | { kind: 'subject'; subject: string; untilMs: number };

export function parseLockoutChange(payload: string): LockoutChange | undefined {
  if (payload === '*') return { kind: 'all' };
  const space = payload.lastIndexOf(' ');
  const untilMs = Number(payload.slice(space + 1));
  if (space <= 0 || !Number.isFinite(untilMs)) return undefined;
  return { kind: 'subject', subject: payload.slice(0, space), untilMs };
}
