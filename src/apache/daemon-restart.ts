import { readFileSync } from 'node:fs';
import { NotFoundError, RefusedError } from '../errors.js';
import { parentPid, processIds, processTitle } from '../proc.js';

// mod_wsgi's documented way to restart one slot (a daemon process group) without touching Apache: signal its processes; the
// Apache parent starts fresh ones, which load the current settings. Daemon processes are found by the title
// that `display-name=%{GROUP}` gives them, "(wsgi:NAME)", among the children of the Apache parent. mod_wsgi
// cuts the title to the length of Apache's argv[0] ("/usr/sbin/apache2": 17 characters), so a long name is
// matched by its visible prefix and only when that prefix is unambiguous.
export interface DaemonProcess {
  pid: number;
  title: string;
}

export function listWsgiDaemons(apacheParentPid?: number): DaemonProcess[] {
  const found: DaemonProcess[] = [];
  for (const pid of processIds()) {
    const title = processTitle(pid);
    if (!title?.startsWith('(wsgi:')) continue;
    if (apacheParentPid !== undefined && parentPid(pid) !== apacheParentPid) continue;
    found.push({ pid, title });
  }
  return found;
}

export function matchesSlot(title: string, slot: string): boolean {
  const full = `(wsgi:${slot})`;
  if (title === full) return true;
  return title.length >= 8 && !title.endsWith(')') && full.startsWith(title);
}

// `slots` is every slot's name, so a cut-short title shared with another slot is refused, not guessed.
export async function restartSlot(slot: string, slots: string[], apachePidFile?: string): Promise<number> {
  const parent = apachePidFile ? Number(readFileSync(apachePidFile, 'utf8').trim()) : undefined;
  if (parent !== undefined && !Number.isInteger(parent)) throw new RefusedError(`no PID in ${apachePidFile}`);
  const mine = listWsgiDaemons(parent).filter((d) => matchesSlot(d.title, slot));
  if (mine.length === 0) {
    throw new NotFoundError(`no running mod_wsgi daemon process for group "${slot}" (looked for the title "(wsgi:${slot})")`);
  }
  for (const daemon of mine) {
    const sharing = slots.filter((other) => other !== slot && matchesSlot(daemon.title, other));
    if (sharing.length > 0) {
      throw new RefusedError(`process title ${daemon.title} is cut short and also fits ${sharing.join(', ')}; use shorter group names`);
    }
  }
  for (const daemon of mine) process.kill(daemon.pid, 'SIGINT');
  return mine.length;
}
