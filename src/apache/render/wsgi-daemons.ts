import type { Slot } from '../../accounts/model.js';
import type { Validated } from './validate.js';

// Server level, wsgi and prefix routing without a pool: a slot of its own per enabled account (ownSlotPerAccount).
export function wsgiDaemons(v: Validated): string[] {
  if (v.routing === 'proxy') return [];
  const lines = [
    '',
    '# ---- mod_wsgi: one daemon process group per tenant -------------------------------------------------',
    `# Sockets next to the pid file (default would be ServerRoot-relative). Paths must fit in 108 bytes.`,
    `WSGISocketPrefix ${v.stateDir}/wsgi`,
    '# Never run Python inside Apache\'s own workers: an empty PROCESS_GROUP would otherwise mean "embedded".',
    'WSGIRestrictEmbedded On',
    '# Python is initialised in the children/daemons only, never in the root parent (the default, stated).',
    'WSGILazyInitialization On',
  ];
  if (v.bindings.length === 0) lines.push('# (no enabled groups: no daemon is defined and every application request gets our 503 page)');
  for (const { account, slot } of v.bindings) {
    lines.push(
      `# Group ${account.name}: settings ${account.settingsModule ?? '(from the settings map)'}. processes=1 keeps one Django per tenant;`,
      '# display-name shows "(wsgi:NAME)" in ps; home= is the cwd; request-timeout bounds a stuck request;',
      '# startup-timeout restarts a daemon whose application does not load.',
      ...(account.runAs ? ["# Runs as its own account: other tenants' data and plexer's files (root:www-data) are out of its reach."] : []),
      ...slotDaemon(v, slot),
    );
  }
  if (v.disabled.length > 0) lines.push(`# Disabled (no daemon; users get 503): ${v.disabled.map((a) => a.name).join(' ')}`);
  return lines;
}

// A slot's daemon, with a pool or without. Each daemon runs the WSGI script as soon as it is forked, before any
// request: the script first seals the descriptors and the login cache the daemon inherited from Apache's parent,
// so tenant code never holds them. application-group=%{GLOBAL} is the interpreter requests use, so the sealed
// module is the one that serves. readSlots() reads the first line back.
export function slotDaemon(v: Validated, slot: Slot): string[] {
  const umask = slot.umask === undefined ? '' : ` umask=${slot.umask}`;
  return [
    `WSGIDaemonProcess ${slot.name} display-name=%{GROUP} processes=1 threads=${v.wsgiThreads} user=${slot.user} group=${slot.group}${umask} home=${slot.home} python-path=${v.pythonPath} lang=C.UTF-8 locale=C.UTF-8 request-timeout=60 startup-timeout=30 graceful-timeout=15`,
    `WSGIImportScript ${v.wsgiScript} process-group=${slot.name} application-group=%{GLOBAL}`,
  ];
}

// The slots a rendered config declares, in its order, with the python-path their processes import from.
export function readSlots(text: string): Array<{ name: string; pythonPath?: string }> {
  return [...text.matchAll(/^\s*WSGIDaemonProcess\s+(\S+)(.*)$/gm)].map((m) => {
    const pythonPath = / python-path=(\S+)/.exec(m[2]!)?.[1];
    return { name: m[1]!, ...(pythonPath ? { pythonPath } : {}) };
  });
}
