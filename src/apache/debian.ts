// What Debian's Apache layout must have enabled for a rendering in the 'debian' layout: a2enmod leaves one
// symlink per module in mods-enabled/, and apache2.conf loads exactly those (with exactly one MPM).
import { existsSync, readdirSync } from 'node:fs';
import { join } from 'node:path';

// Where Debian's apache2ctl, a2enmod and a2ensite look (apache2ctl's own default).
export function debianConfDir(env: NodeJS.ProcessEnv = process.env): string {
  return env['APACHE_CONFDIR'] || '/etc/apache2';
}

export interface DebianModuleCheck {
  missing: string[]; // modules to a2enmod
  otherMpms: string[]; // MPMs enabled besides the one we need: to a2dismod first (a2enmod refuses otherwise)
}

export function checkDebianModules(confDir: string, modules: string[]): DebianModuleCheck {
  const enabledDir = join(confDir, 'mods-enabled');
  const enabled = (name: string) => existsSync(join(enabledDir, `${name}.load`));
  const mpm = modules.find((name) => name.startsWith('mpm_'));
  let entries: string[] = [];
  try {
    entries = readdirSync(enabledDir);
  } catch {
    // no mods-enabled: every module is missing
  }
  const otherMpms = entries
    .filter((file) => /^mpm_[a-z]+\.load$/.test(file))
    .map((file) => file.slice(0, -'.load'.length))
    .filter((name) => name !== mpm);
  return { missing: modules.filter((name) => !enabled(name)), otherMpms };
}

/** The commands that make the check pass, one per line; none when it passes. */
export function debianModuleCommands(check: DebianModuleCheck): string[] {
  return [
    ...(check.otherMpms.length > 0 ? [`a2dismod -q ${check.otherMpms.join(' ')}`] : []),
    ...(check.missing.length > 0 ? [`a2enmod -q ${check.missing.join(' ')}`] : []),
  ];
}
