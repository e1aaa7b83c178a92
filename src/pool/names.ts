// The slot pool's names, in one place: the mod_wsgi daemon groups Apache declares (slots), the OS user each slot
// runs as, and the files the binder keeps for Apache and for the slots.
import { join } from 'node:path';

// The prefix of the OS users a pool creates. Two pools on one machine (two Apaches, or tests side by side) need
// two prefixes: users are machine-wide. Short: OS names stop at 32 characters.
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
  // root's alone (0600): `plexer group exec` holds an account's slot through it (control.ts).
  control: join(stateDir, 'binder-control.sock'),
  status: join(stateDir, 'pool.json'),
});
