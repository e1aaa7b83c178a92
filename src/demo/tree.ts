// An Apache's whole process tree: the parent, its workers, prg: maps, piped loggers and mod_wsgi daemons. A
// SIGKILLed parent leaves the others running (they keep serving on the inherited socket) and reparented to
// init, so they are found by what they keep from it, not by their parent: Apache's parent calls setsid(), every
// process it starts stays in that session, and each holds Apache's error log open (as stderr, or inherited).
// Both must hold, so neither a reused PID nor someone's `tail -f error.log` is ever taken for ours.
import { openFiles, processIds, sessionOf } from '../proc.js';

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

const holdsOpen = (pid: number, file: string) => [...openFiles(pid).values()].includes(file);

/** The live processes of the Apache whose parent had PID `parentPid` and whose error log is `errorLog`. */
export function apacheTree(parentPid: number, errorLog: string): number[] {
  // A zombie has no session here: it is dead already, and its parent (init, once Apache's is gone) reaps it.
  return processIds().filter((pid) => sessionOf(pid) === parentPid && holdsOpen(pid, errorLog));
}

async function waitGone(pids: number[], ms: number): Promise<number[]> {
  const until = Date.now() + ms;
  let left = pids;
  for (;;) {
    left = left.filter((pid) => sessionOf(pid) !== null);
    if (left.length === 0 || Date.now() > until) return left;
    await sleep(50);
  }
}

function signal(pids: number[], sig: NodeJS.Signals): void {
  for (const pid of pids) {
    try {
      process.kill(pid, sig);
    } catch {
      // gone meanwhile
    }
  }
}

/**
 * Stops that tree and returns how many of its processes it found. A live parent gets SIGTERM (what
 * `apache2 -k stop` sends) and stops its own children; whatever is still there after that, or everything when
 * the parent is gone, gets SIGTERM, then SIGKILL. Resolves only when none is left.
 */
export async function stopApacheTree(parentPid: number, errorLog: string): Promise<number> {
  const found = apacheTree(parentPid, errorLog);
  if (found.length === 0) return 0;
  if (found.includes(parentPid)) {
    signal([parentPid], 'SIGTERM');
    // A prg: map holding the rewrite-map lock can keep the parent waiting: bounded, then the tree goes by force.
    await waitGone([parentPid], 10_000);
  }
  let left = apacheTree(parentPid, errorLog);
  if (left.length > 0) {
    signal(left, 'SIGTERM');
    left = await waitGone(left, 3_000);
  }
  if (left.length > 0) {
    signal(left, 'SIGKILL');
    left = await waitGone(left, 5_000);
  }
  if (left.length > 0) throw new Error(`Apache processes ${left.join(', ')} (session ${parentPid}) survived SIGKILL`);
  return found.length;
}
