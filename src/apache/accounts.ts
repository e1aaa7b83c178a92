// The store's accounts as Apache's config sees them, and what each needs on this machine first.
import type { Account } from '../accounts/model.js';
import type { AccountRow } from '../store/accounts.js';
import { ensureAccountDataDir, ownSlotUser } from '../tenant-users.js';

// settingsFrom 'map': every request asks the settings map (live). 'config': the modules are written into the
// config; an account without one is still asked of the map.
export function configAccounts(rows: AccountRow[], settingsFrom: 'map' | 'config'): Account[] {
  return rows.map((a) => ({
    name: a.name,
    settingsModule: settingsFrom === 'config' ? a.settings_module : null,
    enabled: a.enabled,
    runAs: a.run_as,
  }));
}

// Apache refuses to start with a user= it does not know: every run-as user must exist and pass the same checks
// as "plexer group --run-as", even when nothing is created.
export function checkRunAsUsers(rows: AccountRow[]): void {
  for (const a of rows) if (a.run_as) ownSlotUser(a.name, a.run_as);
}

// Each account's own data directory (DATA-DIR/ACCOUNT, 0700), owned by the user its own slot runs as.
export function prepareAccountDirs(dataDir: string, rows: AccountRow[]): void {
  for (const a of rows) ensureAccountDataDir(dataDir, a.name, ownSlotUser(a.name, a.run_as));
}
