// What the watchdog reads of Apache's processes, through the one reader of /proc (src/proc.ts).
import { currentSyscall, isLive, openFile, parentPid, processArgv, processIds } from '../proc.js';

// The live children of `parentPid` whose argv `matches` (a zombie — dead, not yet reaped by Apache — does not
// count). Read from /proc, which needs no privileges for these fields.
export function liveChildren(parent: number, matches: (argv: string[]) => boolean): number[] {
  return processIds().filter((pid) => parentPid(pid) === parent && isLive(pid) && matches(processArgv(pid)));
}

// The pipe a descriptor of `pid` refers to ("pipe:[123]"), or undefined.
export function pipeOf(pid: number, fd: number): string | undefined {
  const target = openFile(pid, fd);
  return target?.startsWith('pipe:') ? target : undefined;
}

// The pipe `pid` is blocked reading right now, from /proc/PID/syscall ("0 0xFD …" is read(2) on FD); needs root.
export function pipeBeingRead(pid: number): string | undefined {
  const fields = currentSyscall(pid);
  if (fields?.[0] !== '0' || fields[1] === undefined) return undefined;
  return pipeOf(pid, Number.parseInt(fields[1], 16));
}
