import type { ApacheGroup } from './options.js';
import type { Validated } from './validate.js';

// Server level, wsgi and prefix routing: one mod_wsgi daemon group per enabled tenant.
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
  if (v.enabled.length === 0) lines.push('# (no enabled groups: no daemon is defined and every application request gets our 503 page)');
  for (const g of v.enabled) {
    lines.push(
      `# Group ${g.name}: settings ${g.settingsModule ?? '(from the settings map)'}. processes=1 keeps one Django per tenant;`,
      '# display-name shows "(wsgi:NAME)" in ps; home= is the cwd; request-timeout bounds a stuck request;',
      '# startup-timeout restarts a daemon whose application does not load.',
      ...(g.runAs ? ["# Runs as its own account: other tenants' data and plexer's files (root:www-data) are out of its reach."] : []),
      `WSGIDaemonProcess ${g.name} display-name=%{GROUP} processes=1 threads=${v.wsgiThreads} ${daemonAccount(v, g)} home=${v.pythonPath} python-path=${v.pythonPath} lang=C.UTF-8 locale=C.UTF-8 request-timeout=60 startup-timeout=30 graceful-timeout=15`,
      ...sealAtStart(v, g.name),
    );
  }
  if (v.disabled.length > 0) lines.push(`# Disabled (no daemon; users get 503): ${v.disabled.map((g) => g.name).join(' ')}`);
  return lines;
}

// Each daemon runs the WSGI script as soon as it is forked, before any request: the script first seals the
// descriptors and the login cache the daemon inherited from Apache's parent, so tenant code never holds them.
// application-group=%{GLOBAL} is the interpreter requests use, so the sealed module is the one that serves.
function sealAtStart(v: Validated, group: string): string[] {
  return [`WSGIImportScript ${v.wsgiScript} process-group=${group} application-group=%{GLOBAL}`];
}

// user= and group= of a daemon group. mod_wsgi's default for a missing group= is Apache's Group (www-data,
// which reads plexer.conf), so group= is always written.
function daemonAccount(v: Validated, g: ApacheGroup): string {
  if (!g.runAs) return `user=${v.runUser} group=${v.runGroup}`;
  const [user, group = user] = g.runAs.split(':');
  return `user=${user} group=${group}`;
}
