// Which daemon groups an Apache config written by `plexer apache config` defines: a group that is in the
// database but not there (added after the last `apache config`) routes its users to the 503 page.
import { readFileSync } from 'node:fs';

// Where the README's Debian install puts the site.
export const DEFAULT_APACHE_CONFIG = '/etc/apache2/sites-available/plexer.conf';

export interface ApacheConfigGroups {
  path: string;
  // null: the config routes through backends (--routing proxy), so no group needs a daemon of its own there.
  groups: Set<string> | null;
}

// null when the file cannot be read (no Apache set up on this machine, or no permission).
export function readApacheConfigGroups(path: string = DEFAULT_APACHE_CONFIG): ApacheConfigGroups | null {
  let text: string;
  try {
    text = readFileSync(path, 'utf8');
  } catch {
    return null;
  }
  const groups = [...text.matchAll(/^\s*WSGIDaemonProcess\s+(\S+)/gm)].map((m) => m[1]!);
  return { path, groups: groups.length > 0 || /^\s*WSGI/m.test(text) ? new Set(groups) : null };
}
