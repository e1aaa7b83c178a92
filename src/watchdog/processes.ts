import { readdirSync, readFileSync, readlinkSync } from 'node:fs';

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

// The pipe a descriptor of `pid` refers to ("pipe:[123]"), or undefined.
export function pipeOf(pid: number, fd: number): string | undefined {
  try {
    const target = readlinkSync(`/proc/${pid}/fd/${fd}`);
    return target.startsWith('pipe:') ? target : undefined;
  } catch {
    return undefined;
  }
}

// The pipe `pid` is blocked reading right now, from /proc/PID/syscall ("0 0xFD …" is read(2) on FD); needs root.
export function pipeBeingRead(pid: number): string | undefined {
  try {
    const fields = readFileSync(`/proc/${pid}/syscall`, 'latin1').trim().split(' ');
    if (fields[0] !== '0' || fields[1] === undefined) return undefined;
    return pipeOf(pid, Number.parseInt(fields[1], 16));
  } catch {
    return undefined;
  }
}

// Bytes `pid` has written so far (/proc/PID/io wchar); undefined when it is gone.
export function bytesWritten(pid: number): number | undefined {
  try {
    const match = /^wchar: (\d+)$/m.exec(readFileSync(`/proc/${pid}/io`, 'latin1'));
    return match ? Number(match[1]) : undefined;
  } catch {
    return undefined;
  }
}
