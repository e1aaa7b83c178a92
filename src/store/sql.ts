export function quoteIdentifier(name: string): string {
  return `"${name.replace(/"/g, '""')}"`;
}

export function changesChannel(schema: string): string {
  return `${schema}_changes`;
}

// Lockouts starting and ending (migration 005), for authd's in-memory mirror.
export function lockoutsChannel(schema: string): string {
  return `${schema}_lockouts`;
}
