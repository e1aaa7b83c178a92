export function quoteIdentifier(name: string): string {
  return `"${name.replace(/"/g, '""')}"`;
}

export function changesChannel(schema: string): string {
  return `${schema}_changes`;
}
