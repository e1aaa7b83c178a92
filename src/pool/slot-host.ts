// What binding a slot does to the machine, as root. The walls are ownership: a bound account's directory and
// everything in it belong to the slot's OS user (0700 at the top), an unbound account's directory belongs to root
// (0700), so a slot's user reaches the data of the account it serves and nothing else. A slot is emptied by
// killing every process of its user (Apache's parent forks a fresh one, which has served nobody) before its
// account's directory is locked away from it. Also what Apache sees of the pool: the bindings map and the status
// file.
import { execFile } from 'node:child_process';
import { chmodSync, chownSync, lchownSync, lstatSync, mkdirSync, readdirSync, readFileSync, rmSync } from 'node:fs';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { RunAsError } from '../errors.js';
import { writeFileAtomic } from '../files.js';
import { parentPid, processIdentity, processIds, processTitle, socketInodes, unixSockets } from '../proc.js';
import { apacheOwner, existingOsUser } from '../tenant-users.js';
import type { SlotAssignment, SlotHost } from './binder.js';
import { poolFiles, slotUser } from './names.js';
import { formatSlotFile } from './slot-file.js';
import type { PoolState } from './state.js';

const SHARED_TEMP_DIRS = ['/tmp', '/var/tmp', '/dev/shm'];
const SYSV_IPC: Array<[string, string]> = [
  ['shm', '-m'],
  ['msg', '-q'],
  ['sem', '-s'],
];
const run = promisify(execFile);
const TOOL_ENV = { PATH: '/usr/sbin:/usr/bin:/sbin:/bin', LANG: 'C' };
// How long a slot taken from an account waits for requests routed to it before its account left the bindings map
// (a worker between its map lookup and the slot's socket), then at most for those in flight to end.
const DRAIN_GRACE_MS = 100;
const DRAIN_LIMIT_MS = 5_000;

// DIR/pool.json, what `plexer slots` shows.
export interface PoolStatus {
  at: string;
  slots: Array<{ slot: string; phase: string; account: string | null; boundAt: string | null; idleSeconds: number | null }>;
}

export interface MachineSlotHostOptions {
  prefix: string;
  // Every slot of the pool: their users are resolved (and checked) at once, and what they own is what may be
  // handed from one to another.
  slots: string[];
  stateDir: string;
  dataDir: string;
  // Apache's parent: the slots' processes are its children.
  apachePid: number;
}

export class MachineSlotHost implements SlotHost {
  private readonly files: ReturnType<typeof poolFiles>;
  private readonly apacheGid: number;
  private readonly slotIds = new Map<string, { uid: number; gid: number }>();
  private busy: { at: number; bySlot: Map<string, number> } = { at: 0, bySlot: new Map() };
  private lastPublished = 0;

  constructor(private readonly o: MachineSlotHostOptions) {
    this.files = poolFiles(o.stateDir);
    this.apacheGid = apacheOwner().gid;
    for (const slot of o.slots) this.slotOsUser(slot);
    mkdirSync(o.dataDir, { recursive: true, mode: 0o711 });
    chownSync(o.dataDir, 0, 0);
    chmodSync(o.dataDir, 0o711);
  }

  // The slot's OS user, checked as a tenant's: never root, never Apache's, in no privileged group.
  slotOsUser(slot: string): { uid: number; gid: number } {
    const known = this.slotIds.get(slot);
    if (known) return known;
    const user = slotUser(this.o.prefix, slot);
    const osUser = existingOsUser(
      { user, group: user },
      `slot user ${user} does not exist: run plexer apache config --slots … again (as root) to create it`,
    );
    const ids = { uid: osUser.uid, gid: osUser.gid };
    this.slotIds.set(slot, ids);
    return ids;
  }

  dataDir(account: string): string {
    const dir = join(this.o.dataDir, account);
    try {
      mkdirSync(dir, { mode: 0o700 });
      chownSync(dir, 0, 0);
    } catch (error) {
      if ((error as NodeJS.ErrnoException).code !== 'EEXIST') throw error;
    }
    // DATA-DIR is root's and not writable by others: only root could have put a link here.
    if (!lstatSync(dir).isDirectory()) throw new RunAsError(`${dir} exists and is not a directory; move it away`);
    return dir;
  }

  // Whether the account's directory is the slot user's (what a binding left): the binder keeps such a binding
  // when it starts again.
  owns(slot: string, dataDir: string): boolean {
    try {
      return lstatSync(dataDir).uid === this.slotOsUser(slot).uid;
    } catch {
      return false;
    }
  }

  async assign(slot: string, a: SlotAssignment): Promise<void> {
    const ids = this.slotOsUser(slot);
    this.giveData(a.dataDir, ids);
    chownSync(a.dataDir, ids.uid, ids.gid);
    chmodSync(a.dataDir, 0o700);
    writeFileAtomic(this.files.binding(slot), formatSlotFile(a), { mode: 0o640, owner: { uid: 0, gid: ids.gid } });
  }

  async empty(slot: string, account: string | null): Promise<void> {
    const { uid } = this.slotOsUser(slot);
    // The account has left the bindings map already, but a request routed just before may still be on its way to
    // the slot's socket, or in it: it is served before the processes go.
    if (account !== null) await this.drain(slot);
    rmSync(this.files.binding(slot), { force: true });
    // Not only the daemon: whatever its code started (a subprocess, a detached job) may hold the account's files
    // open. Every process of the slot's user goes; one that forks while it goes is caught by the next round.
    for (let round = 0; ; round++) {
      const left = processIds().filter((pid) => {
        const id = processIdentity(pid);
        return id !== null && id.uid === uid && !id.zombie;
      });
      if (left.length === 0) break;
      if (round === 100) throw new RunAsError(`processes of slot ${slot}'s user keep coming back: ${left.join(' ')}`);
      for (const pid of left) {
        try {
          process.kill(pid, 'SIGKILL');
        } catch {
          // gone already
        }
      }
      await new Promise((resolve) => setTimeout(resolve, 5));
    }
    this.sweepTemp(uid);
    await this.sweepIpc(uid);
    if (account !== null) {
      const dir = join(this.o.dataDir, account);
      try {
        if (lstatSync(dir).isDirectory()) {
          chownSync(dir, 0, 0);
          chmodSync(dir, 0o700);
        }
      } catch {
        // never made
      }
    }
  }

  // System V shared memory, message queues and semaphores outlive their processes: one the slot's user made or
  // owns would hand its data to the next account on the slot.
  private async sweepIpc(uid: number): Promise<void> {
    for (const [table, flag] of SYSV_IPC) {
      let text: string;
      try {
        text = readFileSync(`/proc/sysvipc/${table}`, 'latin1');
      } catch {
        continue;
      }
      const lines = text.trim().split('\n');
      const header = lines[0]?.trim().split(/\s+/) ?? [];
      const [idAt, uidAt, cuidAt] = [1, header.indexOf('uid'), header.indexOf('cuid')];
      for (const line of lines.slice(1)) {
        const f = line.trim().split(/\s+/);
        if (Number(f[uidAt]) !== uid && Number(f[cuidAt]) !== uid) continue;
        await run('ipcrm', [flag, f[idAt]!], { env: TOOL_ENV }).catch(() => undefined);
      }
    }
  }

  private async drain(slot: string): Promise<void> {
    await new Promise((resolve) => setTimeout(resolve, DRAIN_GRACE_MS));
    const until = Date.now() + DRAIN_LIMIT_MS;
    for (;;) {
      this.busy.at = 0;
      if (this.inFlight(slot) === 0 || Date.now() > until) return;
      await new Promise((resolve) => setTimeout(resolve, 20));
    }
  }

  // What an account's processes wrote belongs to the user that wrote it, with the modes the application chose
  // (SQLite and Django's uploads make files 0644): the next slot's user gets it. That user was a slot of this pool,
  // or the account's own run-as user from before it was pooled (DATA-DIR/ACCOUNT was 0700 and theirs, so nobody
  // else could have put anything there). Root's files stay root's, nothing is followed through a link, and no file
  // with a second name is handed over (a hard link planted there could name a file outside).
  private giveData(dir: string, to: { uid: number; gid: number }): void {
    const walk = (path: string) => {
      for (const name of readdirSync(path)) {
        const entry = join(path, name);
        const st = lstatSync(entry);
        if (st.uid === 0 || (!st.isDirectory() && st.nlink > 1)) continue;
        if (st.uid !== to.uid || st.gid !== to.gid) lchownSync(entry, to.uid, to.gid);
        if (st.isDirectory()) walk(entry);
      }
    };
    walk(dir);
  }

  // What the slot's user left in the machine's shared temporary directories belongs to the account it served:
  // the next account on this slot runs as the same user and must not find it. (Its own code gets TMPDIR in its
  // data directory, plexer.wsgi; this is for what it wrote to /tmp by name.)
  private sweepTemp(uid: number): void {
    for (const dir of SHARED_TEMP_DIRS) {
      let names: string[];
      try {
        names = readdirSync(dir);
      } catch {
        continue;
      }
      for (const name of names) {
        const entry = join(dir, name);
        try {
          if (lstatSync(entry).uid === uid) rmSync(entry, { recursive: true, force: true });
        } catch {
          // gone meanwhile
        }
      }
    }
  }

  async awaitFresh(slot: string): Promise<void> {
    const title = `(wsgi:${slot})`;
    const until = Date.now() + 10_000;
    for (;;) {
      const up = processIds().some(
        (pid) => processTitle(pid) === title && parentPid(pid) === this.o.apachePid && processIdentity(pid)?.zombie === false,
      );
      if (up) return;
      if (Date.now() > until) throw new RunAsError(`slot ${slot} has no process 10 s after it was emptied`);
      await new Promise((resolve) => setTimeout(resolve, 20));
    }
  }

  // Requests in flight per slot: connections accepted on each slot's socket. One look at /proc serves every slot
  // asked within 50 ms (a binding asks for each slot in turn).
  inFlight(slot: string): number {
    const now = Date.now();
    if (now - this.busy.at > 50) this.busy = { at: now, bySlot: this.countInFlight() };
    return this.busy.bySlot.get(slot) ?? 0;
  }

  private countInFlight(): Map<string, number> {
    const sockets = unixSockets();
    const listenerOf = new Map(sockets.filter((e) => e.listening).map((e) => [e.inode, e.path]));
    const connections = new Map<string, number>();
    for (const e of sockets) if (e.connected && !e.listening) connections.set(e.path, (connections.get(e.path) ?? 0) + 1);
    const bySlot = new Map<string, number>();
    for (const pid of processIds()) {
      const title = processTitle(pid);
      if (!title?.startsWith('(wsgi:slot-') || parentPid(pid) !== this.o.apachePid) continue;
      const slot = title.slice('(wsgi:'.length, -1);
      for (const inode of socketInodes(pid)) {
        const path = listenerOf.get(inode);
        if (path !== undefined) bySlot.set(slot, (bySlot.get(slot) ?? 0) + (connections.get(path) ?? 0));
      }
    }
    return bySlot;
  }

  publish(state: PoolState): void {
    const lines = ['# plexer binder: ACCOUNT SLOT, rewritten whole at every binding (Apache rereads it when it changes).'];
    for (const b of state.published()) lines.push(`${b.account} ${b.slot}`);
    // Every version a time of its own: Apache keeps what it read from the map until the file's mtime changes.
    this.lastPublished = Math.max(Date.now(), this.lastPublished + 1);
    writeFileAtomic(this.files.bindings, lines.join('\n') + '\n', {
      mode: 0o640,
      owner: { uid: 0, gid: this.apacheGid },
      mtime: new Date(this.lastPublished),
    });
    this.writeStatus(state);
  }

  // pool.json alone (idle times change between bindings): the bindings map is not touched, so Apache keeps what
  // it has read of it.
  writeStatus(state: PoolState): void {
    const now = Date.now();
    const status: PoolStatus['slots'] = state.slots.map((s) => ({
      slot: s.name,
      phase: s.phase,
      account: s.account,
      boundAt: s.boundAt ? new Date(s.boundAt).toISOString() : null,
      idleSeconds: s.phase === 'bound' ? Math.round((now - s.lastUsed) / 1000) : null,
    }));
    writeFileAtomic(this.files.status, JSON.stringify({ at: new Date(now).toISOString(), slots: status }, null, 2) + '\n', {
      mode: 0o640,
      owner: { uid: 0, gid: this.apacheGid },
    });
  }
}
