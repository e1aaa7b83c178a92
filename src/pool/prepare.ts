// What a pool needs on the machine before Apache starts (Apache refuses a user= it does not know, and a txt:
// map whose file is missing): one OS user per slot, each slot's home, an empty bindings map. Run as root by
// `plexer apache config --slots` and the demo; the binder does the rest at run time.
import { chmodSync, chownSync, existsSync, mkdirSync } from 'node:fs';
import { RunAsError } from '../errors.js';
import { writeFileAtomic } from '../files.js';
import { poolSlots } from '../accounts/model.js';
import { apacheOwner, ensureOsUser } from '../tenant-users.js';
import { poolFiles } from './names.js';

export function preparePool(o: { slots: number; prefix: string; stateDir: string }): void {
  if (process.getuid?.() !== 0) throw new RunAsError('a slot pool is prepared as root (it creates one OS user per slot)');
  const files = poolFiles(o.stateDir);
  const apacheGid = apacheOwner().gid;
  mkdirSync(files.slotsDir, { recursive: true, mode: 0o711 });
  chownSync(files.slotsDir, 0, 0);
  chmodSync(files.slotsDir, 0o711);
  for (const slot of poolSlots(o)) {
    const user = ensureOsUser(slot.user, { create: true });
    mkdirSync(slot.home, { recursive: true, mode: 0o750 });
    chownSync(slot.home, 0, user.gid);
    chmodSync(slot.home, 0o750);
  }
  if (!existsSync(files.bindings)) writeFileAtomic(files.bindings, '', { mode: 0o640, owner: { uid: 0, gid: apacheGid } });
}
