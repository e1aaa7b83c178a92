// Who is on the other end of a loopback TCP connection. mod_authnz_fcgi only speaks TCP, and TCP carries no
// credentials (there is no SO_PEERCRED for it), but the kernel knows which user created each socket: the
// "uid" column of /proc/net/tcp{,6}. The client's socket is the line whose local end is the peer's address
// and whose remote end is ours — exactly one line, since a 4-tuple is unique while the connection lives.
// Apache's workers run as its `User` (www-data); tenants' code runs as the tenants' own users and so cannot
// pass this check, whatever port it guesses.
import { readFileSync } from 'node:fs';
import { open, type FileHandle } from 'node:fs/promises';
import { endianness } from 'node:os';
import { spawn, type ChildProcessWithoutNullStreams } from 'node:child_process';
import { connect, createServer, isIP, type Socket } from 'node:net';
import { coerceError, ConfigError } from '../errors.js';
import { userIds } from '../tenant-users.js';

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

// The kernel walks its whole established-connection hash table to produce these files (262,144 buckets on a
// 24 GB machine: ~4 ms for all of it), whatever they hold. One walk per connection capped the daemon at ~460
// checks/s; so lookups are batched: one walk answers every connection waiting when it starts, and stops as
// soon as all of them are found. Reads go to libuv's thread pool, off the event loop.
interface Waiter {
  needles: { tcp?: string; tcp6?: string };
  uid?: number;
  done: boolean;
  resolve: (uid: number | undefined) => void;
}

export class SocketOwners {
  private queue: Waiter[] = [];
  private scanning = false;

  constructor(private readonly procNet = PROC_NET) {}

  // The uid owning the client socket of the connection `peer` → `local`, or undefined when no such socket is
  // on this host (a remote peer, or one that already closed).
  lookup(peer: Endpoint, local: Endpoint): Promise<number | undefined> {
    const from = encodings(peer.address);
    const to = encodings(local.address);
    const needles: Waiter['needles'] = {};
    for (const table of ['tcp', 'tcp6'] as const) {
      const a = from[table];
      const b = to[table];
      // local_address then rem_address, as printed: the client's end of the connection.
      if (a !== undefined && b !== undefined) needles[table] = `${endpointText(a, peer.port)} ${endpointText(b, local.port)}`;
    }
    if (!needles.tcp && !needles.tcp6) return Promise.resolve(undefined);
    return new Promise((resolve) => {
      this.queue.push({ needles, done: false, resolve });
      if (!this.scanning) void this.drain();
    });
  }

  private async drain(): Promise<void> {
    this.scanning = true;
    try {
      while (this.queue.length > 0) {
        // Only connections accepted before the walk starts: a socket created later may sit in a part of the
        // table already read.
        const batch = this.queue;
        this.queue = [];
        for (const table of ['tcp', 'tcp6'] as const) {
          const waiting = batch.filter((w) => !w.done && w.needles[table] !== undefined);
          if (waiting.length > 0) await scanTable(`${this.procNet}/${table}`, table, waiting).catch(() => undefined);
        }
        for (const w of batch) w.resolve(w.done ? w.uid : undefined);
      }
    } finally {
      this.scanning = false;
    }
  }
}

async function scanTable(path: string, table: 'tcp' | 'tcp6', waiters: Waiter[]): Promise<void> {
  let remaining = waiters.filter((w) => !w.done);
  const file: FileHandle = await open(path, 'r');
  try {
    const buffer = Buffer.allocUnsafe(256 * 1024);
    let carry = '';
    while (remaining.length > 0) {
      const { bytesRead } = await file.read(buffer, 0, buffer.length, null);
      if (bytesRead === 0) return;
      const text = carry + buffer.toString('latin1', 0, bytesRead);
      // An unfinished last line waits for the next chunk.
      const lastNewline = text.lastIndexOf('\n');
      carry = text.slice(lastNewline + 1);
      for (const waiter of remaining) {
        // " sl: local_address rem_address st tx:rx tr:when retrnsmt uid …"
        const at = text.indexOf(`: ${waiter.needles[table]!} `);
        if (at === -1 || at > lastNewline) continue;
        const fields = text.slice(at + 2, text.indexOf('\n', at)).split(/\s+/);
        const uid = Number(fields[6]);
        // TIME_WAIT and NEW_SYN_RECV entries show uid 0 whoever owned the socket: never an identity.
        if (fields[2] === '06' || fields[2] === '0C' || !Number.isInteger(uid) || uid < 0) continue;
        waiter.uid = uid;
        waiter.done = true;
      }
      remaining = remaining.filter((w) => !w.done);
    }
  } finally {
    await file.close();
  }
}

const shared = new Map<string, SocketOwners>();

// One batcher per table directory, shared by every caller in the process.
export function peerUid(peer: Endpoint, local: Endpoint, procNet = PROC_NET): Promise<number | undefined> {
  let owners = shared.get(procNet);
  if (!owners) shared.set(procNet, (owners = new SocketOwners(procNet)));
  return owners.lookup(peer, local);
}

// Fails at start rather than refusing every check later: without the table no caller can be identified.
export function assertPeerLookupWorks(procNet = PROC_NET): void {
  try {
    readFileSync(`${procNet}/tcp`, { encoding: 'latin1', flag: 'r' }).slice(0, 1);
  } catch (error) {
    throw new ConfigError(
      `cannot read ${procNet}/tcp (${coerceError(error).message}): plexer authd needs it to tell ` +
        "Apache's connections from other local users'. Do not hide /proc/self/net from the daemon " +
        '(systemd: no PrivateNetwork=, and ProcSubset=pid is fine)',
    );
  }
}

// The uid of Apache's user, named or numeric, looked up as every account is (tenant-users.ts, getent).
export function uidOf(name: string): number {
  if (/^\d+$/.test(name)) return Number(name);
  const ids = userIds(name);
  if (ids) return ids.uid;
  throw new ConfigError(
    `--apache-user: no user "${name}" (getent passwd ${name} finds none); name the user Apache's workers run as ` +
      '(the User directive; www-data on Debian, apache on Red Hat) or give its numeric uid',
  );
}

export interface PeerOwners {
  lookup(peer: Endpoint, local: Endpoint): Promise<number | undefined>;
  close(): void;
}

// The kernel's sock_diag interface answers "who owns the socket with this 4-tuple" with one hash lookup
// (~4 µs, whatever the table holds), where /proc lists every socket — TIME_WAIT ones included, one per check
// for 60 s: at a few thousand checks per second a walk took 30 ms. Node cannot open AF_NETLINK sockets, so a
// small python3 helper does the lookups; one line per question, one per answer, in order. Questions asked
// while the event loop handles one batch of I/O go out in one write, and come back in one. Unprivileged: any
// user may ask the kernel about any socket's owner.
const NETLINK_HELPER = String.raw`
import os, socket, struct, sys
nl = socket.socket(socket.AF_NETLINK, socket.SOCK_DGRAM, 4)  # NETLINK_SOCK_DIAG
nl.bind((0, 0))
seq = 0
# nlmsghdr (SOCK_DIAG_BY_FAMILY, NLM_F_REQUEST) + inet_diag_req_v2 (all states, INET_DIAG_NOCOOKIE), in host
# order but the ports, which are big-endian on the wire (htons).
REQUEST = struct.Struct('=IHHIIBBBBIHH16s16sIII')
U16 = struct.Struct('=H')
U32 = struct.Struct('=I')
PORTS = struct.Struct('!HH')
def ask(family, src, sport, dst, dport):
    global seq
    seq += 1
    nl.send(REQUEST.pack(REQUEST.size, 20, 1, seq, 0, family, socket.IPPROTO_TCP, 0, 0, 0xffffffff, socket.htons(sport),
                         socket.htons(dport), socket.inet_pton(family, src), socket.inet_pton(family, dst), 0, 0xffffffff, 0xffffffff))
    while True:
        data = nl.recv(65536)
        if U32.unpack_from(data, 8)[0] == seq:
            break
    if U16.unpack_from(data, 4)[0] != 20:
        return None
    state = data[17]
    rsport, rdport = PORTS.unpack_from(data, 20)
    uid = U32.unpack_from(data, 80)[0]  # inet_diag_msg.idiag_uid
    # Not the socket asked about (a listener matched instead), or a state whose uid means nothing.
    if rsport != sport or rdport != dport or state in (6, 10, 12):
        return None
    return uid
def answer(line):
    try:
        rid, fam, src, sport, dst, dport = line.split()
        if fam == '4':
            uid = ask(socket.AF_INET, src, int(sport), dst, int(dport))
            if uid is None:
                uid = ask(socket.AF_INET6, '::ffff:' + src, int(sport), '::ffff:' + dst, int(dport))
        else:
            uid = ask(socket.AF_INET6, src, int(sport), dst, int(dport))
        return rid + ' ' + ('-' if uid is None else str(uid)) + '\n'
    except Exception:
        return line.split(' ', 1)[0] + ' -\n'
# Every question already in the pipe is answered in one write: one wakeup of the daemon per batch.
rest = ''
while True:
    data = os.read(0, 65536)
    if not data:
        break
    lines = (rest + data.decode('latin-1')).split('\n')
    rest = lines.pop()
    out = ''.join(answer(line) for line in lines)
    sys.stdout.write(out)
    sys.stdout.flush()
`;

interface Question {
  resolve: (uid: number | undefined) => void;
  expires: number;
}

export class NetlinkOwners implements PeerOwners {
  private child: ChildProcessWithoutNullStreams | undefined;
  // In the order asked, so the oldest is first: one timer, armed for it, bounds them all.
  private readonly pending = new Map<number, Question>();
  private nextId = 1;
  private closed = false;
  private outgoing = '';
  private flushScheduled = false;
  private timer: NodeJS.Timeout | undefined;

  constructor(
    private readonly python = '/usr/bin/python3',
    private readonly timeoutMs = 2_000,
  ) {}

  private start(): ChildProcessWithoutNullStreams {
    // -I: no user site, no PYTHON* variables; -S: no site module. Nothing from the environment runs.
    const child = spawn(this.python, ['-I', '-S', '-c', NETLINK_HELPER], { stdio: ['pipe', 'pipe', 'pipe'], env: {} });
    child.stderr.resume();
    child.stdout.setEncoding('latin1');
    let carry = '';
    child.stdout.on('data', (chunk: string) => {
      const text = carry + chunk;
      let from = 0;
      for (let newline = text.indexOf('\n'); newline !== -1; newline = text.indexOf('\n', from)) {
        this.answer(text.slice(from, newline));
        from = newline + 1;
      }
      carry = text.slice(from);
    });
    const gone = () => {
      if (this.child !== child) return;
      this.child = undefined;
      // Unanswered questions are refusals; the next one starts a new helper.
      this.outgoing = '';
      for (const question of this.pending.values()) question.resolve(undefined);
      this.pending.clear();
    };
    child.on('exit', gone);
    child.on('error', gone);
    child.stdin.on('error', () => undefined);
    return child;
  }

  private answer(line: string): void {
    const space = line.indexOf(' ');
    const id = Number(line.slice(0, space));
    const question = this.pending.get(id);
    if (!question) return;
    this.pending.delete(id);
    const uid = line.slice(space + 1);
    question.resolve(/^\d+$/.test(uid) ? Number(uid) : undefined);
  }

  private readonly flush = () => {
    this.flushScheduled = false;
    const lines = this.outgoing;
    this.outgoing = '';
    if (lines !== '') this.child?.stdin.write(lines, 'latin1');
  };

  private readonly expire = () => {
    this.timer = undefined;
    const now = performance.now();
    for (const [id, question] of this.pending) {
      if (question.expires > now) {
        this.timer = setTimeout(this.expire, question.expires - now);
        // A question that waits must not keep a closing daemon alive.
        this.timer.unref();
        return;
      }
      this.pending.delete(id);
      question.resolve(undefined);
    }
  };

  lookup(peer: Endpoint, local: Endpoint): Promise<number | undefined> {
    if (this.closed) return Promise.resolve(undefined);
    const v4 = (address: string) => /^::ffff:(\d+\.\d+\.\d+\.\d+)$/i.exec(address)?.[1] ?? (isIP(address) === 4 ? address : undefined);
    const [from, to] = [v4(peer.address), v4(local.address)];
    const family = from !== undefined && to !== undefined ? '4' : '6';
    const src = family === '4' ? from : peer.address.replace(/%.*$/, '');
    const dst = family === '4' ? to : local.address.replace(/%.*$/, '');
    if (family === '6' && (isIP(src!) !== 6 || isIP(dst!) !== 6)) return Promise.resolve(undefined);
    this.child ??= this.start();
    const id = this.nextId++;
    this.outgoing += `${id} ${family} ${src} ${peer.port} ${dst} ${local.port}\n`;
    if (!this.flushScheduled) {
      this.flushScheduled = true;
      // After the event loop has handled every connection that was ready: their questions share one write.
      setImmediate(this.flush);
    }
    return new Promise((resolve) => {
      this.pending.set(id, { resolve, expires: performance.now() + this.timeoutMs });
      if (this.timer === undefined) {
        this.timer = setTimeout(this.expire, this.timeoutMs);
        this.timer.unref();
      }
    });
  }

  close(): void {
    this.closed = true;
    clearTimeout(this.timer);
    this.timer = undefined;
    this.child?.kill('SIGTERM');
  }
}

// The /proc walk as a PeerOwners, for hosts where the helper cannot run.
export class ProcOwners implements PeerOwners {
  constructor(private readonly procNet = PROC_NET) {}
  lookup(peer: Endpoint, local: Endpoint): Promise<number | undefined> {
    return peerUid(peer, local, this.procNet);
  }
  close(): void {}
}

// Whether `owners` identifies this very process's loopback connection: a lookup path that does not work
// (no python3, AF_NETLINK forbidden) would otherwise refuse Apache on every check.
export async function selfTest(owners: PeerOwners): Promise<boolean> {
  const server = createServer();
  try {
    await new Promise<void>((resolve, reject) => {
      server.once('error', reject);
      server.listen(0, '127.0.0.1', resolve);
    });
    const accepted = new Promise<Socket>((resolve) => server.once('connection', resolve));
    const client = connect({ host: '127.0.0.1', port: (server.address() as { port: number }).port });
    client.on('error', () => undefined);
    const socket = await accepted;
    try {
      const uid = await owners.lookup(
        { address: socket.remoteAddress!, port: socket.remotePort! },
        { address: socket.localAddress!, port: socket.localPort! },
      );
      return uid === process.getuid?.();
    } finally {
      client.destroy();
      socket.destroy();
    }
  } catch {
    return false;
  } finally {
    server.close();
  }
}
