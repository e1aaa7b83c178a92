import { readdirSync, readFileSync } from 'node:fs';

// The live children of `parentPid` whose argv `matches` (a zombie — dead, not yet reaped by Apache — does not
// count). Read from /proc, which needs no privileges for these fields.
export function liveChildren(parentPid: number, matches: (argv: string[]) => boolean): number[] {
  const found: number[] = [];
  for (const entry of readdirSync('/proc')) {
    if (!/^\d+$/.test(entry)) continue;
    try {
      const stat = readFileSync(`/proc/${entry}/stat`, 'latin1');
      // The command name may hold spaces and ")": the fields after it start past the LAST ") ".
      const fields = stat.slice(stat.lastIndexOf(') ') + 2).split(' ');
      if (Number(fields[1]) !== parentPid || fields[0] === 'Z' || fields[0] === 'X') continue;
      const argv = readFileSync(`/proc/${entry}/cmdline`, 'latin1').split('\0');
      if (matches(argv)) found.push(Number(entry));
    } catch {
      // exited while we looked
    }
  }
  return found;
}
