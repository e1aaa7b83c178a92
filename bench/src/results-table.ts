import { cpus } from 'node:os';

// What every results file says of the machine it was measured on.
export const machine = (): string => `${cpus().length} × ${cpus()[0]?.model ?? 'cpu'}, Node ${process.version}`;

// A results file's section: its heading, a line on the machine and the run, then one row per measure.
export function resultsTable(heading: string, about: string, rows: ReadonlyArray<readonly string[]>): string {
  return [heading, '', about, '', '| measure | result |', '|---|---|', ...rows.map((row) => `| ${row.join(' | ')} |`), ''].join('\n');
}
