// The daemon groups of the database as Apache's config sees them, and what each needs on this machine first.
import type { AccountRow } from '../store/accounts.js';
import { ownSlotUser, ensureAccountDataDir } from '../tenant-users.js';
import type { ApacheGroup } from './render/index.js';

// settingsFrom 'map': every request asks the settings map (live). 'config': the modules are written into the
// config; a group without one is still asked of the map.
export function apacheGroups(groups: AccountRow[], settingsFrom: 'map' | 'config'): ApacheGroup[] {
  return groups.map((g) => ({
    name: g.name,
    settingsModule: settingsFrom === 'config' ? g.settings_module : null,
    enabled: g.enabled,
    runAs: g.run_as,
  }));
}

// Apache refuses to start with a user= it does not know: every run-as account must exist and pass the same
// checks as "plexer group --run-as", even when nothing is created.
export function checkRunAsAccounts(groups: AccountRow[]): void {
  for (const g of groups) if (g.run_as) ownSlotUser(g.name, g.run_as);
}

// Each group's own data directory (DATA-DIR/GROUP, 0700), owned by its run-as account, or by www-data for a
// group without one.
export function prepareTenantDirs(dataDir: string, groups: AccountRow[]): void {
  for (const g of groups) ensureAccountDataDir(dataDir, g.name, ownSlotUser(g.name, g.run_as));
}
