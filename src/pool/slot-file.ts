// The file that tells a slot's processes which account they serve (STATE/slots/SLOT, root:SLOT-USER 0640):
// "key=value" lines, read by apache/wsgi/plexer.wsgi when a process starts (and by the binder when it starts
// again). The WSGI script trusts it only when the data directory it names is its own user's (the binder hands it
// over before it writes the file).
import { readFileSync } from 'node:fs';
import { isAccountName, isSettingsModule } from '../names.js';
import type { SlotAssignment } from './binder.js';

export function formatSlotFile(a: SlotAssignment): string {
  return `account=${a.account}\nsettings=${a.settings}\ndata_dir=${a.dataDir}\n`;
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
  const dataDir = fields.get('data_dir') ?? '';
  if (!isAccountName(account) || !isSettingsModule(settings) || !dataDir.startsWith('/')) return null;
  return { account, settings, dataDir };
}
