// The OS users slots run as (src/accounts/model.ts): an account's own (its run_as) for its own slot, or a pool
// slot's. A slot running as such a user keeps one account's code from reading another account's data directory,
// and from anything plexer keeps for Apache (plexer.conf is root:www-data 0640, the session key root 0600). That
// only holds if the user is really the account's or the slot's own: never root, never Apache's user or group
// (which read plexer.conf), never a member of those groups (mod_wsgi calls initgroups(), so supplementary groups
// count), never a static system account other services share. Everything here is checked on the machine that
// runs the daemons, because uids are per machine while the store is shared.
import { execFileSync } from 'node:child_process';
import { chmodSync, chownSync, lstatSync, mkdirSync } from 'node:fs';
import { join } from 'node:path';
import { RunAsError, UsageError } from './errors.js';
import type { Owner } from './files.js';
import { isAccountName, isRunAs } from './names.js';

export const APACHE_RUN_USER = 'www-data';
export const APACHE_RUN_GROUP = 'www-data';
// Debian statically allocates uids/gids below 100 (daemon, bin, sys, …) to shared system services.
const FIRST_DYNAMIC_ID = 100;
const NOBODY = 65534;
const TOOL_ENV = { PATH: '/usr/sbin:/usr/bin:/sbin:/bin', LANG: 'C' };

export interface RunAs {
  user: string;
  // "user" alone means the user's own group of the same name (what useradd --user-group creates). Never
  // mod_wsgi's default for a missing group=, which is Apache's Group, www-data, the group that reads plexer.conf.
  group: string;
}

export interface OsUser extends RunAs, Owner {
  // Every OS group the slot's processes will hold after initgroups(): primary and supplementary.
  gids: number[];
}

export function parseRunAs(spec: string): RunAs {
  if (!isRunAs(spec)) {
    throw new UsageError(`invalid run-as "${spec}": USER or USER:GROUP, lower-case letters, digits, "_" or "-", at most 32 each`);
  }
  const [user, group] = spec.split(':') as [string, string | undefined];
  return { user, group: group ?? user };
}

export function formatRunAs(r: RunAs): string {
  return r.group === r.user ? r.user : `${r.user}:${r.group}`;
}

function getent(database: 'passwd' | 'group', key: string): string[] | null {
  try {
    return execFileSync('getent', [database, key], { encoding: 'utf8', env: TOOL_ENV, stdio: ['ignore', 'pipe', 'ignore'] })
      .trim()
      .split(':');
  } catch {
    return null; // exit 2: no such entry
  }
}

export function userIds(user: string): { uid: number; gid: number } | null {
  const entry = getent('passwd', user);
  return entry ? { uid: Number(entry[2]), gid: Number(entry[3]) } : null;
}

export function groupId(group: string): number | null {
  const entry = getent('group', group);
  return entry ? Number(entry[2]) : null;
}

function groupName(gid: number): string | null {
  return getent('group', String(gid))?.[0] ?? null;
}

// The user as it exists on this machine, or null when it does not exist.
function lookupOsUser(r: RunAs): OsUser | null {
  const ids = userIds(r.user);
  if (!ids) return null;
  const gid = groupId(r.group);
  if (gid === null)
    throw new RunAsError(
      `run-as group "${r.group}" does not exist on this machine (create it with groupadd --system ${r.group}, or use --create-user)`,
    );
  const supplementary = execFileSync('id', ['-G', r.user], { encoding: 'utf8', env: TOOL_ENV }).trim().split(/\s+/).map(Number);
  return { ...r, uid: ids.uid, gid, gids: [...new Set([gid, ...supplementary])] };
}

// Refuses users through which an account's code could read what plexer keeps for Apache or other accounts.
function checkOsUser(a: OsUser): void {
  const apache = userIds(APACHE_RUN_USER);
  const apacheGid = groupId(APACHE_RUN_GROUP);
  const who = formatRunAs(a);
  if (a.uid === 0 || a.user === 'root') throw new RunAsError(`run-as ${who}: a tenant never runs as root`);
  if (a.user === APACHE_RUN_USER || a.uid === apache?.uid) {
    throw new RunAsError(
      `run-as ${who}: that is Apache's own user, shared by every tenant and able to read plexer.conf; give the tenant its own (--create-user)`,
    );
  }
  if (a.uid < FIRST_DYNAMIC_ID || a.uid === NOBODY) {
    throw new RunAsError(`run-as ${who}: uid ${a.uid} is a system account other services share; give the tenant its own (--create-user)`);
  }
  for (const gid of a.gids) {
    if (gid === 0 || gid === apacheGid || gid < FIRST_DYNAMIC_ID || gid === NOBODY) {
      const name = groupName(gid) ?? String(gid);
      throw new RunAsError(
        `run-as ${who}: the account is in group ${name} (gid ${gid}), which would let the tenant read files kept for ${gid === apacheGid ? 'Apache (plexer.conf, the maps)' : 'the system'}; use an account outside it`,
      );
    }
  }
}

// The user, created as a system user with its own group when `create` is set and it is missing, and checked.
// The caller stores formatRunAs(result): for "USER" naming an existing user whose primary group has another
// name, that is "USER:PRIMARY", so the rendered group= is always the group the user really has.
export function ensureOsUser(spec: string, options: { create: boolean }): OsUser {
  const r = parseRunAs(spec);
  const existing = userIds(r.user);
  if (existing && !spec.includes(':')) r.group = groupName(existing.gid) ?? r.group;
  let user = lookupOsUser(r);
  if (!user && options.create) {
    // Checked before anything is created: a refused user must not be left behind.
    for (const name of [r.user, r.group]) {
      if (name === 'root' || name === APACHE_RUN_USER || name === APACHE_RUN_GROUP) {
        throw new RunAsError(`run-as ${spec}: refusing to create an account with "${name}": a tenant needs a user and group of its own`);
      }
    }
    const gid = groupId(r.group);
    if (gid !== null && (gid === groupId(APACHE_RUN_GROUP) || gid < FIRST_DYNAMIC_ID || gid === NOBODY)) {
      throw new RunAsError(
        `run-as ${spec}: group ${r.group} (gid ${gid}) is shared with the system or Apache; use a group of the tenant's own`,
      );
    }
    if (process.getuid?.() !== 0)
      throw new RunAsError(`--create-user needs root (useradd); or create ${r.user} yourself and run again without it`);
    createSystemUser(r);
    user = lookupOsUser(r);
  }
  if (!user) {
    throw new RunAsError(
      `run-as user "${r.user}" does not exist on this machine: add --create-user, or create it with ` +
        `useradd --system --user-group --no-create-home --home-dir /nonexistent --shell /usr/sbin/nologin ${r.user}`,
    );
  }
  checkOsUser(user);
  return user;
}

function createSystemUser(r: RunAs): void {
  const run = (tool: string, args: string[]) => {
    try {
      execFileSync(tool, args, { env: TOOL_ENV, stdio: ['ignore', 'ignore', 'pipe'], encoding: 'utf8' });
    } catch (error) {
      const e = error as { status?: number; stderr?: string };
      // 9: the name was taken meanwhile (another plexer creating the same account); the lookup after decides.
      if (e.status === 9) return;
      throw new RunAsError(`${tool} ${args.join(' ')} failed (exit ${e.status}): ${(e.stderr ?? '').trim()}`);
    }
  };
  const login = ['--system', '--no-create-home', '--home-dir', '/nonexistent', '--shell', '/usr/sbin/nologin'];
  if (r.group === r.user && groupId(r.group) === null) {
    run('useradd', [...login, '--user-group', r.user]);
  } else {
    if (groupId(r.group) === null) run('groupadd', ['--system', r.group]);
    run('useradd', [...login, '--gid', r.group, r.user]);
  }
}

// Apache's run user and group: the owner of a data directory for an account without run_as (the old, shared mode).
export function apacheOwner(): Owner {
  const ids = userIds(APACHE_RUN_USER);
  const gid = groupId(APACHE_RUN_GROUP);
  if (!ids || gid === null) throw new RunAsError(`user or group ${APACHE_RUN_USER} is missing: is Debian's apache2 installed?`);
  return { uid: ids.uid, gid };
}

// DATA-DIR itself: root's, traversable but not listable (accounts reach their own directory by name and cannot
// see which others exist); DATA-DIR/ACCOUNT: the account's alone, 0700. Only the directory itself is given to
// the owner: after a run_as change, its contents keep their old owner (chown -R them yourself, knowingly).
export function ensureAccountDataDir(dataDir: string, account: string, owner: Owner): string {
  if (!isAccountName(account)) throw new UsageError(`invalid daemon group name "${account}"`);
  mkdirSync(dataDir, { recursive: true, mode: 0o711 });
  chownSync(dataDir, 0, 0);
  chmodSync(dataDir, 0o711);
  const dir = join(dataDir, account);
  try {
    mkdirSync(dir, { mode: 0o700 });
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code !== 'EEXIST') throw error;
  }
  // A symlink here would hand the account whatever it points to; DATA-DIR is root's, so only root could plant one.
  if (!lstatSync(dir).isDirectory()) throw new RunAsError(`${dir} exists and is not a directory; move it away`);
  chownSync(dir, owner.uid, owner.gid);
  chmodSync(dir, 0o700);
  return dir;
}

// A user a slot runs as, which must exist already: `missing` says how to make it.
export function existingOsUser(r: RunAs, missing: string): OsUser {
  const user = lookupOsUser(r);
  if (!user) throw new RunAsError(missing);
  checkOsUser(user);
  return user;
}

// Who the processes of an account's own slot run as: its checked run-as user, else Apache's (without one).
export function ownSlotUser(account: string, runAs: string | null): Owner {
  if (!runAs) return apacheOwner();
  return existingOsUser(
    parseRunAs(runAs),
    `daemon group ${account} runs as "${runAs}", which does not exist on this machine: create it (plexer group set ${account} --run-as ${runAs} --create-user)`,
  );
}
