// The slot pool's names, in one place: the mod_wsgi daemon groups Apache declares (slots), the OS user each slot
// runs as, the OS group that owns an account's data (a slot reaches an account's data only while its user is a
// member), and the files the binder keeps for Apache and for the slots.
import { createHash } from 'node:crypto';
import { join } from 'node:path';
import { GROUP_NAME_PATTERN } from '../names.js';

// The prefix of every OS name a pool creates. Two pools on one machine (two Apaches, or tests side by side) need
// two prefixes: slot users and account groups are machine-wide. Short: OS names stop at 32 characters.
export const POOL_PREFIX_PATTERN = /^[a-z][a-z0-9]{1,11}$/;
export const DEFAULT_POOL_PREFIX = 'plexer';
export const MAX_SLOTS = 500;

// "slot-1" … "slot-N": the mod_wsgi daemon group names. They cannot be account names' look-alikes in the rules
// (those come from a map answer, never compared with these), and they fit mod_wsgi's cut-short process title.
export const slotName = (index: number): string => `slot-${index}`;
export const SLOT_NAME_PATTERN = /^slot-([1-9][0-9]{0,2})$/;
export const slotNames = (count: number): string[] => Array.from({ length: count }, (_, i) => slotName(i + 1));

// The OS user slot-N runs as: PREFIX-sN (its own primary group of the same name).
export function slotUser(prefix: string, slot: string): string {
  const match = SLOT_NAME_PATTERN.exec(slot);
  if (!match) throw new Error(`not a slot name: ${slot}`);
  return `${prefix}-s${match[1]}`;
}

// The OS group that owns an account's data: PREFIX-a-ACCOUNT, or, for a name too long for the OS, its first
// characters and a hash of the whole name (two accounts never share a group).
export function accountGroup(prefix: string, account: string): string {
  if (!GROUP_NAME_PATTERN.test(account)) throw new Error(`not an account name: ${account}`);
  const whole = `${prefix}-a-${account}`;
  if (whole.length <= 32) return whole;
  const hash = createHash('sha256').update(account).digest('hex').slice(0, 8);
  return `${prefix}-a-${account.slice(0, 32 - prefix.length - 3 - 9)}-${hash}`;
}

// Files in Apache's state directory. bindings.txt: Apache's txt: map "ACCOUNT SLOT", read by its workers
// (root:www-data 0640). slots/SLOT/: the slot's home (its processes' working directory, root:SLOT-USER 0750),
// holding `binding`, what its processes serve. binder.sock: where Apache's workers ask for a binding.
// pool.json: what `plexer slots` shows.
export const poolFiles = (stateDir: string) => ({
  bindings: join(stateDir, 'bindings.txt'),
  slotsDir: join(stateDir, 'slots'),
  slotHome: (slot: string) => join(stateDir, 'slots', slot),
  binding: (slot: string) => join(stateDir, 'slots', slot, 'binding'),
  socket: join(stateDir, 'binder.sock'),
  status: join(stateDir, 'pool.json'),
});
