// Every command module exports one of these; main.ts loads a module only when its command runs, so the
// authenticator (started once per login by Apache) does not pay for the others.
export interface Command {
  summary: string;
  help: string;
  run(argv: string[]): Promise<number>;
}

export function print(line: string): void {
  process.stdout.write(line + '\n');
}

export function table(rows: string[][]): string {
  const widths = rows[0]?.map((_, column) => Math.max(...rows.map((row) => (row[column] ?? '').length))) ?? [];
  return rows
    .map((row) =>
      row
        .map((cell, i) => cell.padEnd(widths[i] ?? 0))
        .join('  ')
        .trimEnd(),
    )
    .join('\n');
}
