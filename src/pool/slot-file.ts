// The file that tells a slot's processes which account they serve (STATE/slots/SLOT, root:SLOT-USER 0640):
// "key=value" lines, read by apache/wsgi/plexer.wsgi when a process starts (and by the binder when it starts
// again). The WSGI script trusts it only together with the group the kernel gave the process.
import { readFileSync } from 'node:fs';
import { isGroupName, isSettingsModule } from '../names.js';
import type { SlotAssignment } from './binder.js';

export function formatSlotFile(a: SlotAssignment): string {
  return `account=${a.account}\nsettings=${a.settings}\ngid=${a.gid}\ndata_dir=${a.dataDir}\n`;
}

// null when missing or not exactly what formatSlotFile writes.
export function readSlotFile(path: string): SlotAssignment | null {
  let text: string;
  try {
    text = readFileSync(path, 'utf8');
  } catch {
    return null;
  }
  const fields = new Map(
    text
      .split('\n')
      .filter(Boolean)
      .map((line) => line.split('=', 2) as [string, string]),
  );
  const account = fields.get('account') ?? '';
  const settings = fields.get('settings') ?? '';
  const gid = fields.get('gid') ?? '';
  const dataDir = fields.get('data_dir') ?? '';
  if (!isGroupName(account) || !isSettingsModule(settings) || !/^[1-9][0-9]{0,9}$/.test(gid) || !dataDir.startsWith('/')) return null;
  return { account, settings, gid: Number(gid), dataDir };
}
