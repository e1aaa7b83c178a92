// Which slots an Apache config written by `plexer apache config` declares: an account that is in the database but
// has no slot there (added after the last `apache config`) routes its users to the 503 page.
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { DEFAULT_POOL_PREFIX } from '../pool/names.js';
import { debianConfDir } from './debian.js';
import { RENDERED_BY_PREFIX } from './render/global.js';
import { readSlots } from './render/wsgi-daemons.js';

// Where the README's install block puts the site: in $APACHE_CONFDIR when it is set, as apache2ctl, a2ensite
// and `apache config --layout debian` take it, so that every command finds the site those wrote.
export const DEFAULT_APACHE_CONFIG = join(debianConfDir(), 'sites-available/plexer.conf');

export interface ApacheConfigSlots {
  path: string;
  // The slots of the accounts that have one of their own there (ownSlotPerAccount). null: no account has: the
  // config routes through backends (--routing proxy), or through a pool of slots bound on demand (then `slots`
  // says how many).
  ownSlots: Set<string> | null;
  slots?: number;
  // Where the pool's binder keeps its files and the accounts' data, and its slot users' prefix (the binder's own
  // options in the config), and the slots' python-path.
  pool?: { stateDir: string; dataDir: string; prefix: string; pythonPath?: string };
  // The command that rendered it (render/global.ts RENDERED_BY_PREFIX), when it says.
  renderedBy?: string;
}

// What makes Apache take a new account: the command that rendered its config again, and the reload its layout
// needs; undefined when the config does not say how it was rendered.
export function rerenderCommand(config: ApacheConfigSlots | null): string | undefined {
  const again = config?.renderedBy;
  if (again === undefined) return undefined;
  if (/ --layout debian( |$)/.test(again)) return `${again} && apache2ctl graceful`;
  return / --reload( |$)/.test(again) ? again : `${again} --reload`;
}

// null when the file cannot be read (no Apache set up on this machine, or no permission).
export function readApacheConfigSlots(path: string = DEFAULT_APACHE_CONFIG): ApacheConfigSlots | null {
  let text: string;
  try {
    text = readFileSync(path, 'utf8');
  } catch {
    return null;
  }
  const slots = readSlots(text);
  const pool = / binder --slots (\d+) /.exec(text);
  const renderedBy = text
    .split('\n')
    .find((line) => line.startsWith(RENDERED_BY_PREFIX))
    ?.slice(RENDERED_BY_PREFIX.length);
  const binderOption = (name: string) => new RegExp(` binder .*--${name} ([^\\s"]+)`).exec(text)?.[1];
  const stateDir = binderOption('state-dir');
  const dataDir = binderOption('data-dir');
  const pythonPath = slots[0]?.pythonPath;
  return {
    path,
    ownSlots: !pool && (slots.length > 0 || /^\s*WSGI/m.test(text)) ? new Set(slots.map((s) => s.name)) : null,
    ...(pool ? { slots: Number(pool[1]) } : {}),
    ...(pool && stateDir && dataDir
      ? { pool: { stateDir, dataDir, prefix: binderOption('prefix') ?? DEFAULT_POOL_PREFIX, ...(pythonPath ? { pythonPath } : {}) } }
      : {}),
    ...(renderedBy ? { renderedBy } : {}),
  };
}
