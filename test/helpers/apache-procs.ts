// Apache's children as the tests see them in /proc: the prefork workers, the prg: maps, the watchdog.
import { readdirSync, readFileSync } from 'node:fs';

interface Child {
  pid: number;
  argv: string[];
}

function childrenOf(parentPid: number): Child[] {
  const found: Child[] = [];
  for (const entry of readdirSync('/proc')) {
    if (!/^\d+$/.test(entry)) continue;
    try {
      const stat = readFileSync(`/proc/${entry}/stat`, 'latin1');
      const fields = stat.slice(stat.lastIndexOf(') ') + 2).split(' ');
      if (Number(fields[1]) !== parentPid || fields[0] === 'Z') continue;
      found.push({ pid: Number(entry), argv: readFileSync(`/proc/${entry}/cmdline`, 'latin1').split('\0') });
    } catch {
      // exited while we looked
    }
  }
  return found;
}

export const mapProcesses = (apachePid: number, kind: string): number[] =>
  childrenOf(apachePid)
    .filter((c) => c.argv[2] === 'map' && c.argv[3] === kind)
    .map((c) => c.pid);

export const lockoutProcesses = (apachePid: number): number[] =>
  childrenOf(apachePid)
    .filter((c) => c.argv[2] === 'lockout')
    .map((c) => c.pid);

export const watchdogProcesses = (apachePid: number): number[] =>
  childrenOf(apachePid)
    .filter((c) => c.argv[2] === 'watchdog')
    .map((c) => c.pid);

// Prefork workers run the same binary as the parent.
export const apacheWorkers = (apachePid: number): number[] =>
  childrenOf(apachePid)
    .filter((c) => (c.argv[0] ?? '').endsWith('apache2'))
    .map((c) => c.pid);

// A worker blocked reading a pipe is one waiting for a prg: map's answer under the rewrite-map lock.
export function workersWaitingOnPipe(apachePid: number): number[] {
  return apacheWorkers(apachePid).filter((pid) => {
    try {
      return /pipe_read/.test(readFileSync(`/proc/${pid}/wchan`, 'latin1'));
    } catch {
      return false;
    }
  });
}
