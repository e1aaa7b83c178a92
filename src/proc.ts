// The one reader of /proc: process status, parents, titles and sockets, for everything that finds Apache's
// children (the slot pool, daemon restarts, the demo, doctor).
import { readdirSync, readFileSync, readlinkSync } from 'node:fs';

function read(pid: number | string, file: string): string | null {
  try {
    return readFileSync(`/proc/${pid}/${file}`, 'latin1');
  } catch {
    return null;
  }
}

export function processIds(): number[] {
  return readdirSync('/proc')
    .filter((name) => /^\d+$/.test(name))
    .map(Number);
}

// Fields after the command name in /proc/PID/stat. The name is in parentheses and may itself hold ") " (a
// process names itself), so the fields start after the LAST ") ".
function statFields(pid: number): string[] | null {
  const stat = read(pid, 'stat');
  const end = stat?.lastIndexOf(') ') ?? -1;
  return stat && end >= 0 ? stat.slice(end + 2).split(' ') : null;
}

export function parentPid(pid: number): number | null {
  const ppid = statFields(pid)?.[1];
  return ppid === undefined ? null : Number(ppid);
}

// argv[0] as the process shows it (mod_wsgi writes "(wsgi:NAME)" over it, padded with spaces).
export function processTitle(pid: number): string | null {
  return read(pid, 'cmdline')?.split('\0')[0]?.trimEnd() ?? null;
}

export interface ProcessIdentity {
  uid: number; // real uid
  gids: number[]; // supplementary groups
  // Dead, waiting for its parent to reap it (runs nothing, holds no file).
  zombie: boolean;
}

export function processIdentity(pid: number): ProcessIdentity | null {
  const status = read(pid, 'status');
  if (!status) return null;
  const uid = /^Uid:\s+(\d+)/m.exec(status)?.[1];
  const groups = /^Groups:[ \t]*([\d \t]*)$/m.exec(status)?.[1] ?? '';
  if (uid === undefined) return null;
  const state = /^State:\s+(\S)/m.exec(status)?.[1];
  return { uid: Number(uid), gids: groups.split(/\s+/).filter(Boolean).map(Number), zombie: state === 'Z' || state === 'X' };
}

// The inodes of the sockets a process holds open (root reads any process's).
export function socketInodes(pid: number): Set<string> {
  const inodes = new Set<string>();
  let fds: string[];
  try {
    fds = readdirSync(`/proc/${pid}/fd`);
  } catch {
    return inodes;
  }
  for (const fd of fds) {
    try {
      const match = /^socket:\[(\d+)\]$/.exec(readlinkSync(`/proc/${pid}/fd/${fd}`));
      if (match) inodes.add(match[1]!);
    } catch {
      // closed meanwhile
    }
  }
  return inodes;
}

export interface UnixSocketEntry {
  inode: string;
  listening: boolean;
  connected: boolean;
  path: string;
}

const ACCEPTING = 0x10000; // __SO_ACCEPTCON in /proc/net/unix's Flags
const CONNECTED = '03'; // SS_CONNECTED in its St column

// Every unix socket of the machine with a path. An accepted connection shows the path of the socket it was
// accepted on, so a listener's open connections can be counted from outside.
export function unixSockets(): UnixSocketEntry[] {
  const text = readFileSync('/proc/net/unix', 'latin1');
  const entries: UnixSocketEntry[] = [];
  for (const line of text.split('\n').slice(1)) {
    const f = line.trim().split(/\s+/);
    if (f.length < 8) continue;
    entries.push({
      inode: f[6]!,
      listening: (parseInt(f[3]!, 16) & ACCEPTING) !== 0,
      connected: f[5] === CONNECTED,
      path: f.slice(7).join(' '),
    });
  }
  return entries;
}

// Linux reports process start times in USER_HZ ticks, 100 on every architecture Node runs on.
const USER_HZ = 100;

// How long ago a process started: its starttime (ticks after boot, the 22nd field of /proc/PID/stat) against
// /proc/uptime; null when it is gone.
export function processAgeSeconds(pid: number): number | null {
  const start = Number(statFields(pid)?.[19]);
  let uptime: number;
  try {
    uptime = Number(readFileSync('/proc/uptime', 'latin1').split(' ')[0]);
  } catch {
    return null;
  }
  return Number.isFinite(start) && Number.isFinite(uptime) ? uptime - start / USER_HZ : null;
}
