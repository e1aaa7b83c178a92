// What binding a slot does to the machine, as root: the account's OS group and data directory, the slot user's
// membership (mod_wsgi's initgroups() reads it at each fork, so only a fresh process holds the new group), the
// slot file its processes read, and the restart that replaces them. Also what Apache sees of the pool: the
// bindings map and the status file.
import { execFile } from 'node:child_process';
import { chmodSync, chownSync, existsSync, lchownSync, lstatSync, mkdirSync, readdirSync, rmSync } from 'node:fs';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { RunAsError } from '../errors.js';
import { writeFileAtomic } from '../files.js';
import { parentPid, processIdentity, processIds, processTitle, socketInodes, unixSockets, type UnixSocketEntry } from '../proc.js';
import { apacheOwner, checkTenantAccount, groupId, lookupAccount } from '../tenant-users.js';
import type { SlotAssignment, SlotHost } from './binder.js';
import { accountGroup, poolFiles, slotUser } from './names.js';
import { formatSlotFile } from './slot-file.js';
import type { PoolState } from './state.js';

const run = promisify(execFile);
const TOOL_ENV = { PATH: '/usr/sbin:/usr/bin:/sbin:/bin', LANG: 'C' };
const SHARED_TEMP_DIRS = ['/tmp', '/var/tmp', '/dev/shm'];
// usermod/groupadd exit 10 when another program holds /etc/group's lock.
const LOCKED = 10;

// DIR/pool.json, what `plexer slots` shows.
export interface PoolStatus {
  at: string;
  slots: Array<{ slot: string; phase: string; account: string | null; boundAt: string | null; idleSeconds: number | null }>;
}

export interface MachineSlotHostOptions {
  prefix: string;
  // Every slot of the pool: their users are resolved (and checked) at once, and what they own is what
  // giveData may hand from one to another.
  slots: string[];
  stateDir: string;
  dataDir: string;
  // Apache's parent: the slots' processes are its children.
  apachePid: number;
  // How long a restarted slot may take to come back (ms). Default 20 000.
  restartTimeoutMs?: number;
}

export class MachineSlotHost implements SlotHost {
  private readonly files: ReturnType<typeof poolFiles>;
  private readonly apacheGid: number;
  private readonly slotIds = new Map<string, { uid: number; gid: number }>();
  // usermod and groupadd take /etc/group's lock: one at a time from here.
  private membership: Promise<unknown> = Promise.resolve();
  private sockets: { at: number; entries: UnixSocketEntry[] } = { at: 0, entries: [] };

  constructor(private readonly o: MachineSlotHostOptions) {
    this.files = poolFiles(o.stateDir);
    this.apacheGid = apacheOwner().gid;
    for (const slot of o.slots) this.slotAccount(slot);
  }

  // The slot's OS user, checked as a tenant's: never root, never Apache's, in no privileged group.
  slotAccount(slot: string): { uid: number; gid: number } {
    const known = this.slotIds.get(slot);
    if (known) return known;
    const user = slotUser(this.o.prefix, slot);
    const account = lookupAccount({ user, group: user });
    if (!account) throw new RunAsError(`slot user ${user} does not exist: run plexer apache config --slots … again (as root) to create it`);
    checkTenantAccount({ ...account, gids: [account.gid] });
    const ids = { uid: account.uid, gid: account.gid };
    this.slotIds.set(slot, ids);
    return ids;
  }

  // Whether the slot user's groups (as the next fork will read them) include gid.
  holds(slot: string, gid: number): boolean {
    const user = slotUser(this.o.prefix, slot);
    return lookupAccount({ user, group: user })?.gids.includes(gid) ?? false;
  }

  // A slot that names an account or whose user holds any group besides its own.
  needsEmptying(slot: string): boolean {
    const user = slotUser(this.o.prefix, slot);
    const account = lookupAccount({ user, group: user });
    return existsSync(this.files.binding(slot)) || (account?.gids.some((gid) => gid !== account.gid) ?? false);
  }

  async prepare(account: string, settings: string): Promise<SlotAssignment> {
    const group = accountGroup(this.o.prefix, account);
    let gid = groupId(group);
    if (gid === null) {
      await this.serialized(['groupadd', '--system', group], [9]);
      gid = groupId(group);
      if (gid === null) throw new RunAsError(`groupadd ${group} did not create it`);
    }
    return { account, settings, gid, dataDir: this.ensureDataDir(account, gid) };
  }

  // DATA-DIR/ACCOUNT: root's, the account group's (setgid, so files made there stay the group's), nobody else's.
  private ensureDataDir(account: string, gid: number): string {
    mkdirSync(this.o.dataDir, { recursive: true, mode: 0o711 });
    const dir = join(this.o.dataDir, account);
    try {
      mkdirSync(dir, { mode: 0o2770 });
    } catch (error) {
      if ((error as NodeJS.ErrnoException).code !== 'EEXIST') throw error;
    }
    if (!lstatSync(dir).isDirectory()) throw new RunAsError(`${dir} exists and is not a directory; move it away`);
    chownSync(dir, 0, gid);
    chmodSync(dir, 0o2770);
    return dir;
  }

  async assign(slot: string, assignment: SlotAssignment | null): Promise<void> {
    const ids = this.slotAccount(slot);
    const user = slotUser(this.o.prefix, slot);
    const file = this.files.binding(slot);
    // The file goes first when emptying and comes last when binding: a process that reads it always holds the
    // group it names, or the file names nothing.
    if (assignment === null) rmSync(file, { force: true });
    await this.serialized(['usermod', '-G', assignment ? accountGroup(this.o.prefix, assignment.account) : '', user], []);
    if (assignment !== null) {
      this.giveData(assignment.dataDir, ids.uid, assignment.gid);
      writeFileAtomic(file, formatSlotFile(assignment), { mode: 0o640, owner: { uid: 0, gid: ids.gid } });
    }
  }

  // What an account's processes wrote belongs to the slot user that wrote it, with the modes the application chose
  // (SQLite and Django's uploads make files 0644): the next slot's user gets it, so it can go on writing. Only what
  // a slot of this pool owns is handed over, never followed through a link, and never a file with more than one
  // name (a hard link planted there could name a file outside): a tenant cannot get anything else given to it.
  private giveData(dir: string, uid: number, gid: number): void {
    const slotUids = new Set(this.slotUids());
    const walk = (path: string) => {
      for (const name of readdirSync(path)) {
        const entry = join(path, name);
        const st = lstatSync(entry);
        if (!slotUids.has(st.uid) || (!st.isDirectory() && st.nlink > 1)) continue;
        if (st.uid !== uid || st.gid !== gid) lchownSync(entry, uid, gid);
        if (st.isDirectory()) walk(entry);
      }
    };
    walk(dir);
  }

  private slotUids(): number[] {
    return [...this.slotIds.values()].map((ids) => ids.uid);
  }

  private daemons(slot: string): number[] {
    const title = `(wsgi:${slot})`;
    return processIds().filter((pid) => processTitle(pid) === title && parentPid(pid) === this.o.apachePid);
  }

  async restart(slot: string, gid: number | null): Promise<void> {
    const { uid } = this.slotAccount(slot);
    const old = new Set(this.daemons(slot));
    // Not only the daemon: whatever its code started (a subprocess, a detached job) still holds the old account's
    // group and may hold its files open. Every process of the slot's user goes; one that forks while it goes is
    // caught by the next round.
    for (let round = 0; round < 50; round++) {
      const left = processIds().filter((pid) => processIdentity(pid)?.uid === uid);
      if (left.length === 0) break;
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
    const deadline = Date.now() + (this.o.restartTimeoutMs ?? 20_000);
    for (;;) {
      const fresh = this.daemons(slot).filter((pid) => !old.has(pid));
      const ready = fresh.some((pid) => {
        const id = processIdentity(pid);
        return id !== null && id.uid === uid && (gid === null || id.gids.includes(gid));
      });
      if (ready) return;
      if (Date.now() > deadline) throw new RunAsError(`slot ${slot} did not come back within ${this.o.restartTimeoutMs ?? 20_000} ms`);
      await new Promise((resolve) => setTimeout(resolve, 20));
    }
  }

  // What the slot's user left in the machine's shared temporary directories belongs to the account it served:
  // the next account on this slot runs as the same user and must not find it. (Its own code gets TMPDIR in
  // its data directory, plexer.wsgi; this is for what it wrote to /tmp by name.)
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

  inFlight(slot: string): number {
    const now = Date.now();
    if (now - this.sockets.at > 50) this.sockets = { at: now, entries: unixSockets() };
    const held = new Set<string>();
    for (const pid of this.daemons(slot)) for (const inode of socketInodes(pid)) held.add(inode);
    const listeners = new Set(this.sockets.entries.filter((e) => e.listening && held.has(e.inode)).map((e) => e.path));
    return this.sockets.entries.filter((e) => e.connected && !e.listening && listeners.has(e.path)).length;
  }

  publish(state: PoolState): void {
    const lines = ['# plexer binder: ACCOUNT SLOT, rewritten whole at every binding (Apache rereads it when it changes).'];
    for (const b of state.published()) lines.push(`${b.account} ${b.slot}`);
    writeFileAtomic(this.files.bindings, lines.join('\n') + '\n', { mode: 0o640, owner: { uid: 0, gid: this.apacheGid } });
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

  private serialized(command: string[], okCodes: number[]): Promise<void> {
    const attempt = async (): Promise<void> => {
      for (let tries = 0; ; tries++) {
        try {
          await run(command[0]!, command.slice(1), { env: TOOL_ENV });
          return;
        } catch (error) {
          const e = error as { code?: number; stderr?: string };
          if (typeof e.code === 'number' && okCodes.includes(e.code)) return;
          if (e.code === LOCKED && tries < 20) {
            await new Promise((resolve) => setTimeout(resolve, 50 + Math.random() * 100));
            continue;
          }
          throw new RunAsError(`${command.join(' ')} failed (exit ${e.code}): ${(e.stderr ?? '').trim()}`);
        }
      }
    };
    const next = this.membership.then(attempt, attempt);
    this.membership = next.catch(() => undefined);
    return next;
  }
}
