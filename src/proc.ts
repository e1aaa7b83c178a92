// The one reader of /proc: process status, parents, sessions, command lines, open files and sockets, for
// everything that finds processes (the slot pool, daemon restarts, the watchdog, the demo and its servers, doctor).
// Every function answers null or empty for a process that is gone (or was never there).
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

/** Its command line, one argument each (empty when it is gone, or a kernel thread). */
export function processArgv(pid: number): string[] {
  const text = read(pid, 'cmdline');
  if (!text) return [];
  const argv = text.split('\0');
  if (argv.at(-1) === '') argv.pop();
  return argv;
}

/** Alive and not a zombie (dead, waiting for its parent to reap it: it runs nothing and holds no file). */
export function isLive(pid: number): boolean {
  const state = statFields(pid)?.[0];
  return state !== undefined && state !== 'Z' && state !== 'X';
}

/** Its session (the pid of the session's leader: Apache's parent calls setsid()); null when gone or a zombie. */
export function sessionOf(pid: number): number | null {
  const fields = statFields(pid);
  return fields && fields[0] !== 'Z' && fields[0] !== 'X' ? Number(fields[3]) : null;
}

/** Where each of its descriptors points ("pipe:[12]", "socket:[34]", a path), by descriptor number. */
export function openFiles(pid: number): Map<number, string> {
  const targets = new Map<number, string>();
  let fds: string[];
  try {
    fds = readdirSync(`/proc/${pid}/fd`);
  } catch {
    return targets;
  }
  for (const fd of fds) {
    const target = readLink(`/proc/${pid}/fd/${fd}`);
    if (target !== null) targets.set(Number(fd), target);
  }
  return targets;
}

/** Where one descriptor points, or null. */
export function openFile(pid: number, fd: number): string | null {
  return readLink(`/proc/${pid}/fd/${fd}`);
}

/** Its working directory, or null. */
export function processCwd(pid: number): string | null {
  return readLink(`/proc/${pid}/cwd`);
}

/** The system call it is blocked in, as /proc/PID/syscall shows it (number, then arguments in hex); root only. */
export function currentSyscall(pid: number): string[] | null {
  return read(pid, 'syscall')?.trim().split(' ') ?? null;
}

/** Bytes it has written so far (/proc/PID/io wchar), or null. */
export function bytesWritten(pid: number): number | null {
  const match = /^wchar: (\d+)$/m.exec(read(pid, 'io') ?? '');
  return match ? Number(match[1]) : null;
}

function readLink(path: string): string | null {
  try {
    return readlinkSync(path);
  } catch {
    return null;
  }
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
  for (const target of openFiles(pid).values()) {
    const match = /^socket:\[(\d+)\]$/.exec(target);
    if (match) inodes.add(match[1]!);
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
