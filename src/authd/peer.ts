// Who is on the other end of a loopback TCP connection. mod_authnz_fcgi only speaks TCP, and TCP carries no
// credentials (there is no SO_PEERCRED for it), but the kernel knows which user created each socket: the
// "uid" column of /proc/net/tcp{,6}. The client's socket is the line whose local end is the peer's address
// and whose remote end is ours — exactly one line, since a 4-tuple is unique while the connection lives.
// Apache's workers run as its `User` (www-data); tenants' code runs as the tenants' own users and so cannot
// pass this check, whatever port it guesses.
import { readFileSync } from 'node:fs';
import { open, type FileHandle } from 'node:fs/promises';
import { endianness } from 'node:os';
import { isIP } from 'node:net';
import { ConfigError } from '../errors.js';

export interface Endpoint {
  address: string;
  port: number;
}

// /proc/self/net rather than /proc/net: the systemd unit's ProcSubset=pid hides the /proc/net link, not the
// calling process's own view of its network namespace.
export const PROC_NET = '/proc/self/net';

const littleEndian = endianness() === 'LE';
const hexByte = (b: number) => b.toString(16).padStart(2, '0').toUpperCase();

// The kernel prints each 32-bit word of an address with %08X in host byte order.
function words(bytes: number[]): string {
  let out = '';
  for (let i = 0; i < bytes.length; i += 4) {
    const word = bytes.slice(i, i + 4);
    out += (littleEndian ? word.reverse() : word).map(hexByte).join('');
  }
  return out;
}

function ipv4Bytes(address: string): number[] {
  return address.split('.').map(Number);
}

function ipv6Bytes(address: string): number[] | undefined {
  let text = address.replace(/%.*$/, '');
  // A trailing dotted quad (::ffff:127.0.0.1) is two 16-bit groups.
  const quad = /(\d+\.\d+\.\d+\.\d+)$/.exec(text);
  if (quad) {
    const [a, b, c, d] = ipv4Bytes(quad[1]!);
    text = text.slice(0, -quad[1]!.length) + `${((a! << 8) | b!).toString(16)}:${((c! << 8) | d!).toString(16)}`;
  }
  const [head, tail] = text.split('::') as [string, string | undefined];
  const headGroups = head === '' ? [] : head.split(':');
  const tailGroups = tail === undefined || tail === '' ? [] : tail.split(':');
  const missing = 8 - headGroups.length - tailGroups.length;
  if (missing < 0 || (tail === undefined && missing !== 0)) return undefined;
  const groups = [...headGroups, ...Array<string>(missing).fill('0'), ...tailGroups];
  const bytes: number[] = [];
  for (const group of groups) {
    const value = Number.parseInt(group, 16);
    if (!/^[0-9A-Fa-f]{1,4}$/.test(group)) return undefined;
    bytes.push(value >> 8, value & 0xff);
  }
  return bytes;
}

// How `address` may appear in each table: an IPv4 client socket is in tcp; an IPv6 socket connected to an
// IPv4-mapped address is in tcp6 with the mapped form.
function encodings(address: string): { tcp?: string; tcp6?: string } {
  const mapped = /^::ffff:(\d+\.\d+\.\d+\.\d+)$/i.exec(address);
  const v4 = mapped ? mapped[1]! : isIP(address) === 4 ? address : undefined;
  if (v4) {
    const bytes = ipv4Bytes(v4);
    return { tcp: words(bytes), tcp6: words([0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff, ...bytes]) };
  }
  const bytes = isIP(address) === 6 ? ipv6Bytes(address) : undefined;
  return bytes ? { tcp6: words(bytes) } : {};
}

const endpointText = (encoded: string, port: number) => `${encoded}:${port.toString(16).padStart(4, '0').toUpperCase()}`;

// Reads in chunks and stops at the match. The kernel walks its whole established-connection hash table to
// produce this file (262,144 buckets on a 24 GB machine: ~5 ms for all of it, ~2.5 ms on average to the
// match), so the reads go to libuv's thread pool rather than blocking the event loop.
async function findLine(path: string, needle: string): Promise<string | undefined> {
  let file: FileHandle;
  try {
    file = await open(path, 'r');
  } catch {
    return undefined;
  }
  try {
    const buffer = Buffer.allocUnsafe(64 * 1024);
    let text = '';
    for (;;) {
      const { bytesRead } = await file.read(buffer, 0, buffer.length, null);
      if (bytesRead === 0) return undefined;
      text += buffer.toString('latin1', 0, bytesRead);
      const at = text.indexOf(needle);
      if (at !== -1) {
        const end = text.indexOf('\n', at);
        // The rest of the line is in the next chunk.
        if (end === -1) continue;
        return text.slice(text.lastIndexOf('\n', at) + 1, end);
      }
      // Keep only the unfinished last line: a needle may straddle two chunks.
      text = text.slice(text.lastIndexOf('\n') + 1);
    }
  } finally {
    await file.close();
  }
}

// The uid owning the client socket of the connection `peer` → `local`, or undefined when no such socket is
// on this host (a remote peer, or one that already closed).
export async function peerUid(peer: Endpoint, local: Endpoint, procNet = PROC_NET): Promise<number | undefined> {
  const from = encodings(peer.address);
  const to = encodings(local.address);
  for (const table of ['tcp', 'tcp6'] as const) {
    const a = from[table];
    const b = to[table];
    if (a === undefined || b === undefined) continue;
    // Fields: sl, local_address, rem_address, st, tx:rx, tr:when, retrnsmt, uid, …
    const line = await findLine(`${procNet}/${table}`, ` ${endpointText(a, peer.port)} ${endpointText(b, local.port)} `);
    if (line === undefined) continue;
    const fields = line.trim().split(/\s+/);
    // TIME_WAIT and NEW_SYN_RECV entries show uid 0 whoever owned the socket: never an identity.
    if (fields[3] === '06' || fields[3] === '0C') continue;
    const uid = Number(fields[7]);
    if (Number.isInteger(uid) && uid >= 0) return uid;
  }
  return undefined;
}

// Fails at start rather than refusing every check later: without the table no caller can be identified.
export function assertPeerLookupWorks(procNet = PROC_NET): void {
  try {
    readFileSync(`${procNet}/tcp`, { encoding: 'latin1', flag: 'r' }).slice(0, 1);
  } catch (error) {
    throw new ConfigError(`cannot read ${procNet}/tcp (${(error as Error).message}): plexer authd needs it to tell ` +
      "Apache's connections from other local users'. Do not hide /proc/self/net from the daemon " +
      '(systemd: no PrivateNetwork=, and ProcSubset=pid is fine)');
  }
}

// The uid of a user name, from /etc/passwd (the daemon does not need NSS for its one lookup at start).
export function uidOf(name: string, passwd = '/etc/passwd'): number {
  if (/^\d+$/.test(name)) return Number(name);
  let text: string;
  try {
    text = readFileSync(passwd, 'utf8');
  } catch (error) {
    throw new ConfigError(`cannot read ${passwd} to find user "${name}": ${(error as Error).message}`);
  }
  for (const line of text.split('\n')) {
    const fields = line.split(':');
    if (fields[0] === name && fields.length >= 3 && /^\d+$/.test(fields[2]!)) return Number(fields[2]);
  }
  throw new ConfigError(`--apache-user: no user "${name}" in ${passwd}; name the user Apache's workers run as ` +
    '(the User directive; www-data on Debian, apache on Red Hat) or give its numeric uid');
}
