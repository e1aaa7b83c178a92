// CPU accounting for bench/src/apache-run.ts: user+system time of process sets read from /proc, so each wrk
// run can be broken down into where the CPU went (Apache children, WSGI daemons, the map program, PostgreSQL,
// authd). Times include reaped children (cutime/cstime), which is where a forked authenticator's time lands.
import { readdirSync, readFileSync } from 'node:fs';

const TICK_MS = 10; // USER_HZ = 100 on Linux

export interface ProcInfo {
  pid: number;
  ppid: number;
  ticks: number; // utime + stime + cutime + cstime
  cmd: string;
}

export function processes(): ProcInfo[] {
  const out: ProcInfo[] = [];
  for (const name of readdirSync('/proc')) {
    if (!/^\d+$/.test(name)) continue;
    try {
      const stat = readFileSync(`/proc/${name}/stat`, 'utf8');
      const rest = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
      // rest[0] = state (field 3); utime = field 14 -> rest[11]
      const ticks = Number(rest[11]) + Number(rest[12]) + Number(rest[13]) + Number(rest[14]);
      const cmd = readFileSync(`/proc/${name}/cmdline`, 'utf8').replace(/\0/g, ' ').trim();
      out.push({ pid: Number(name), ppid: Number(rest[1]), ticks, cmd });
    } catch {
      // exited meanwhile
    }
  }
  return out;
}

export type Classifier = (p: ProcInfo, all: Map<number, ProcInfo>) => string | undefined;

/** CPU milliseconds per category in a snapshot. */
export function snapshot(classify: Classifier): Map<string, Map<number, number>> {
  const procs = processes();
  const byPid = new Map(procs.map((p) => [p.pid, p]));
  const result = new Map<string, Map<number, number>>();
  for (const p of procs) {
    const cat = classify(p, byPid);
    if (cat === undefined) continue;
    if (!result.has(cat)) result.set(cat, new Map());
    result.get(cat)!.set(p.pid, p.ticks * TICK_MS);
  }
  return result;
}

/** CPU ms spent per category between two snapshots (processes that appeared count from zero). */
export function delta(before: Map<string, Map<number, number>>, after: Map<string, Map<number, number>>): Map<string, number> {
  const out = new Map<string, number>();
  for (const [cat, pids] of after) {
    let ms = 0;
    for (const [pid, t] of pids) ms += t - (before.get(cat)?.get(pid) ?? 0);
    out.set(cat, ms);
  }
  return out;
}

/** The pids of `root` and all its descendants. */
export function isDescendant(p: ProcInfo, root: number, all: Map<number, ProcInfo>): boolean {
  for (let q: ProcInfo | undefined = p, hops = 0; q && hops < 10; q = all.get(q.ppid), hops++) {
    if (q.pid === root) return true;
  }
  return false;
}
