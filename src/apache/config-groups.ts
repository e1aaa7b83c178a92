// Which daemon groups an Apache config written by `plexer apache config` defines: a group that is in the
// database but not there (added after the last `apache config`) routes its users to the 503 page.
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { DEFAULT_POOL_PREFIX } from '../pool/names.js';
import { debianConfDir } from './debian.js';
import { RENDERED_BY_PREFIX } from './render/global.js';

// Where the README's install block puts the site: in $APACHE_CONFDIR when it is set, as apache2ctl, a2ensite
// and `apache config --layout debian` take it, so that every command finds the site those wrote.
export const DEFAULT_APACHE_CONFIG = join(debianConfDir(), 'sites-available/plexer.conf');

export interface ApacheConfigGroups {
  path: string;
  // null: no group needs a daemon of its own there: the config routes through backends (--routing proxy), or
  // through a pool of slots bound on demand (then `slots` says how many).
  groups: Set<string> | null;
  slots?: number;
  // Where the pool's binder keeps its files and the accounts' data, and its slot users' prefix (the binder's own
  // options in the config), and the slots' python-path.
  pool?: { stateDir: string; dataDir: string; prefix: string; pythonPath?: string };
  // The command that rendered it (render/global.ts RENDERED_BY_PREFIX), when it says.
  renderedBy?: string;
}

// What makes Apache take a new group: the command that rendered its config again, and the reload its layout
// needs; undefined when the config does not say how it was rendered.
export function rerenderCommand(config: ApacheConfigGroups | null): string | undefined {
  const again = config?.renderedBy;
  if (again === undefined) return undefined;
  if (/ --layout debian( |$)/.test(again)) return `${again} && apache2ctl graceful`;
  return / --reload( |$)/.test(again) ? again : `${again} --reload`;
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
  const pool = / binder --slots (\d+) /.exec(text);
  const renderedBy = text
    .split('\n')
    .find((line) => line.startsWith(RENDERED_BY_PREFIX))
    ?.slice(RENDERED_BY_PREFIX.length);
  const binderOption = (name: string) => new RegExp(` binder .*--${name} ([^\\s"]+)`).exec(text)?.[1];
  const stateDir = binderOption('state-dir');
  const dataDir = binderOption('data-dir');
  const pythonPath = /^\s*WSGIDaemonProcess slot-1 .*python-path=(\S+)/m.exec(text)?.[1];
  return {
    path,
    groups: !pool && (groups.length > 0 || /^\s*WSGI/m.test(text)) ? new Set(groups) : null,
    ...(pool ? { slots: Number(pool[1]) } : {}),
    ...(pool && stateDir && dataDir
      ? { pool: { stateDir, dataDir, prefix: binderOption('prefix') ?? DEFAULT_POOL_PREFIX, ...(pythonPath ? { pythonPath } : {}) } }
      : {}),
    ...(renderedBy ? { renderedBy } : {}),
  };
}
