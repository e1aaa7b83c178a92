// What `plexer authn` (a process Apache forks per check) and `plexer checker` (long-running) say to each other on the
// checker's unix socket: one JSON line each way. The request carries what mod_authnz_external gave authn; the
// answer is the exit status authn must end with (cli/auth-exit.ts), so both paths answer Apache the same.
export interface CheckRequest {
  user: string;
  password: string;
  ip?: string;
  // false: Apache's log counts a refusal (`plexer lockout`), as with `authn --counted-by-log`.
  count: boolean;
}

// A user name and password from mod_authnz_external are far below this; more is refused unread.
export const MAX_REQUEST_BYTES = 8 * 1024;

export function encodeRequest(r: CheckRequest): string {
  return `${JSON.stringify(r)}\n`;
}

// null for anything but exactly that shape.
export function decodeRequest(line: string): CheckRequest | null {
  let value: unknown;
  try {
    value = JSON.parse(line);
  } catch {
    return null;
  }
  if (typeof value !== 'object' || value === null) return null;
  const { user, password, ip, count } = value as Record<string, unknown>;
  if (typeof user !== 'string' || typeof password !== 'string' || typeof count !== 'boolean') return null;
  if (ip !== undefined && typeof ip !== 'string') return null;
  return { user, password, count, ...(ip !== undefined ? { ip } : {}) };
}

export function encodeAnswer(exitCode: number): string {
  return `${exitCode}\n`;
}

// The exit status, or null when the line is not one.
export function decodeAnswer(line: string): number | null {
  return /^\d{1,3}$/.test(line) ? Number(line) : null;
}
