import { resolve } from 'node:path';
import type { PlexerConfig } from '../config.js';
import { NotFoundError, UsageError } from '../errors.js';
import { PROXY_BACKEND_REGEX } from '../apache/render/index.js';
import { isBackend, isAccountName, isSettingsModule } from '../names.js';
import * as accounts from '../store/accounts.js';
import { ensureOsUser, formatRunAs } from '../tenant-users.js';
import { expectPositionals, parseCommand, parseWholeNumber } from './args.js';
import { print, table, type Command } from './command.js';
import { DEFAULT_DATA_DIR, DEFAULT_PYTHON_PATH, execInAccounts } from './group-exec.js';
import { ownSlotName } from '../accounts/model.js';
import { DEFAULT_APACHE_CONFIG, readApacheConfigSlots, rerenderCommand } from '../apache/config-slots.js';
import { loadCommandConfig, withStore } from './store-session.js';

const help = `Usage:
  plexer group add NAME [--settings MODULE] [--backend TARGET] [--capacity N] [--disabled]
                        [--run-as USER[:GROUP] [--create-user]] [--apache-config FILE]
  plexer group set NAME [--settings MODULE|--no-settings] [--backend TARGET|--no-backend]
                        [--capacity N|--no-capacity] [--enable|--disable]
                        [--run-as USER[:GROUP] [--create-user]|--no-run-as] [--restart --apache-pid-file FILE]
  plexer group list [--json]
  plexer group del NAME
  plexer group token NAME [--rotate]
  plexer group restart NAME [--apache-pid-file FILE]
  plexer group exec NAME|--all [--jobs N] [--data-dir DIR] [--python-path DIR] [--apache-config FILE]
                    -- COMMAND [ARG]…

A daemon group is one backend instance: a mod_wsgi daemon process group (NAME), the Django settings module
it loads, and/or a mod_proxy backend TARGET (unix:/run/x.sock|fcgi://localhost/ or http://127.0.0.1:8001/).
--capacity caps how many users "user add --group auto" puts in it. A disabled group takes no new users and
its users get the "no instance" page. Adding a group needs its Apache config rendered again and one graceful
reload so Apache defines its daemon processes: add prints the command that does it, read from the config
(--apache-config, default ${DEFAULT_APACHE_CONFIG}); every other change is live at once. A group's processes
load their settings module once: "set --settings M --restart" restarts that group alone so it takes effect
(as "group restart" does); other groups keep serving.
token prints the token Apache sends the group's backend (X-Plexer-Token, and PLEXER_BACKEND_TOKEN to a FastCGI
one): a backend serves a request only when it carries its own, since anyone on the host can reach a TCP port
(apache/MODES.md). --rotate replaces it; Apache sends the new one at once, so give it to the backend first.
--run-as runs the group's daemon processes as their own OS user (and its own group unless :GROUP is given)
instead of Apache's www-data, so a tenant's code cannot read other tenants' data or plexer's files. The
account must exist on this machine (--create-user creates a system user and group without a home or login
shell); root, www-data, accounts in the www-data or root group and static system accounts are refused, and
no two groups may share a user. It takes effect at the next "plexer apache config --reload", which also
creates the group's data directory (DATA-DIR/NAME, mode 0700, owned by the user) when run as root.
exec runs COMMAND (e.g. python3 manage.py migrate) once per group (every enabled group with --all) as that
group's daemons run: as its run-as user (www-data without one), in --python-path (default the example project,
${DEFAULT_PYTHON_PATH}), with DJANGO_SETTINGS_MODULE, PLEXER_GROUP, PLEXER_DATA_DIR (DATA-DIR/NAME, created
0700 for the user; DATA-DIR default ${DEFAULT_DATA_DIR}, as apache config's) and PYTHONPATH, nothing else of
the caller's environment; --jobs groups at a time (default 4). Output lines are prefixed [NAME]; a line per group
says how it ended; exit 1 if any group's command failed. Run it as root. When Apache's config (--apache-config)
serves accounts from a pool of slots, each account is bound to a slot as its first request would be, and the
command runs as that slot's user with the pool's data directory and python-path; the slot is held (never taken
for another account) until the command ends.
Options: --config FILE (default /etc/plexer/plexer.conf)`;

const options = {
  all: { type: 'boolean' },
  jobs: { type: 'string' },
  'data-dir': { type: 'string' },
  'python-path': { type: 'string' },
  settings: { type: 'string' },
  'no-settings': { type: 'boolean' },
  backend: { type: 'string' },
  'no-backend': { type: 'boolean' },
  capacity: { type: 'string' },
  'no-capacity': { type: 'boolean' },
  enable: { type: 'boolean' },
  disable: { type: 'boolean' },
  disabled: { type: 'boolean' },
  json: { type: 'boolean' },
  'apache-pid-file': { type: 'string' },
  restart: { type: 'boolean' },
  'run-as': { type: 'string' },
  'no-run-as': { type: 'boolean' },
  'create-user': { type: 'boolean' },
  rotate: { type: 'boolean' },
  'apache-config': { type: 'string' },
} as const;

type Values = ReturnType<typeof parseCommand<typeof options>>['values'];

function accountName(name: string): string {
  if (!isAccountName(name))
    throw new UsageError(
      `invalid daemon group name "${name}": lower-case letters, digits, "_" or "-", starting with a letter, at most 63, and not "auto" or "none" (user --group keywords)`,
    );
  return name;
}

function fieldsFrom(values: Values): accounts.AccountFields {
  const fields: accounts.AccountFields = {};
  if (values.settings !== undefined) {
    if (!isSettingsModule(values.settings))
      throw new UsageError(`invalid settings module "${values.settings}": a dotted Python module path`);
    fields.settingsModule = values.settings;
  }
  if (values['no-settings']) fields.settingsModule = null;
  if (values.backend !== undefined) {
    // The generated proxy rules route only what PROXY_BACKEND_REGEX matches; anything else would answer 503.
    if (!isBackend(values.backend) || !new RegExp(PROXY_BACKEND_REGEX).test(values.backend)) {
      throw new UsageError(
        `invalid or unsupported backend "${values.backend}": expected unix:/path|http://localhost/, ` +
          'unix:/path|fcgi://localhost/, http://HOST:PORT/ or fcgi://HOST:PORT/ (the generated proxy rules route no other scheme)',
      );
    }
    fields.backend = values.backend;
  }
  if (values['no-backend']) fields.backend = null;
  if (values.capacity !== undefined) fields.capacity = parseWholeNumber(values.capacity, '--capacity');
  if (values['no-capacity']) fields.capacity = null;
  if (values.enable && values.disable) throw new UsageError('--enable and --disable exclude each other');
  if (values.enable) fields.enabled = true;
  if (values.disable || values.disabled) fields.enabled = false;
  if (values['run-as'] !== undefined && values['no-run-as']) throw new UsageError('--run-as and --no-run-as exclude each other');
  if (values['create-user'] && values['run-as'] === undefined) throw new UsageError('--create-user needs --run-as USER[:GROUP]');
  // Resolved (and created) on this machine before the store is touched, so a refused account changes nothing.
  if (values['run-as'] !== undefined) {
    fields.runAs = formatRunAs(ensureOsUser(values['run-as'], { create: values['create-user'] === true }));
  }
  if (values['no-run-as']) fields.runAs = null;
  return fields;
}

async function restart(config: PlexerConfig, name: string, apachePidFile: string | undefined): Promise<number> {
  const { restartSlot } = await import('../apache/daemon-restart.js');
  const names = await withStore(config, async (db) => (await accounts.listAccounts(db)).map((a) => a.name));
  if (!names.includes(name)) throw new NotFoundError(`no daemon group "${name}"`);
  const count = await restartSlot(ownSlotName(name), names.map(ownSlotName), apachePidFile);
  print(`signalled ${count} daemon process(es) of ${name}; Apache starts fresh ones`);
  return 0;
}

export const command: Command = {
  summary: 'manage daemon groups (backend instances)',
  help,
  async run(argvWithCommand) {
    // exec's COMMAND follows "--" and keeps its own options.
    const dashes = argvWithCommand.indexOf('--');
    const argv = dashes === -1 ? argvWithCommand : argvWithCommand.slice(0, dashes);
    const execCommand = dashes === -1 ? [] : argvWithCommand.slice(dashes + 1);
    const { values, positionals } = parseCommand(argv, options);
    if (values.help || positionals.length === 0) return (print(help), values.help ? 0 : 2);
    const [action, ...rest] = positionals as [string, ...string[]];
    const config = loadCommandConfig(values.config);
    switch (action) {
      case 'add': {
        const name = accountName((expectPositionals(rest, ['name']) as [string])[0]);
        const fields = fieldsFrom(values);
        await withStore(config, (pool) => accounts.addAccount(pool, name, fields));
        // The command that rendered Apache's config, read back from it: pasted, it renders the new group in.
        const configPath = values['apache-config'] ?? DEFAULT_APACHE_CONFIG;
        const running = readApacheConfigSlots(configPath);
        const again = rerenderCommand(running);
        const why = running ? `${configPath} does not say how it was rendered` : `no Apache config at ${configPath}`;
        if (running?.slots !== undefined) {
          print(`group ${name} added; its users are served from the pool's ${running.slots} slots from their first request (no reload)`);
          return 0;
        }
        print(
          again
            ? `daemon group ${name} added; Apache starts its daemon processes after:\n  ${again}`
            : `daemon group ${name} added; Apache starts its daemon processes once its config is rendered again and reloaded (${why}): ` +
                'plexer apache config … --out FILE, then apache2ctl graceful (Debian) or --reload (standalone)',
        );
        return 0;
      }
      case 'set': {
        const name = accountName((expectPositionals(rest, ['name']) as [string])[0]);
        const fields = fieldsFrom(values);
        if (Object.keys(fields).length === 0) throw new UsageError('nothing to change: give at least one option');
        await withStore(config, (pool) => accounts.updateAccount(pool, name, fields));
        if (!values.restart) return 0;
        return restart(config, name, values['apache-pid-file']);
      }
      case 'list': {
        expectPositionals(rest, []);
        const groups = await withStore(config, (pool) => accounts.listAccounts(pool));
        if (values.json) return (print(JSON.stringify(groups)), 0);
        const rows = groups.map((g) => [
          g.name,
          g.enabled ? 'enabled' : 'disabled',
          `${g.users}/${g.capacity ?? '-'}`,
          g.settings_module ?? '-',
          g.backend ?? '-',
          g.run_as ?? '-',
        ]);
        print(table([['NAME', 'STATE', 'USERS/CAP', 'SETTINGS', 'BACKEND', 'RUN AS'], ...rows]));
        return 0;
      }
      case 'del': {
        const [name] = expectPositionals(rest, ['name']) as [string];
        await withStore(config, (pool) => accounts.deleteAccount(pool, accountName(name)));
        print(`daemon group ${name} deleted`);
        return 0;
      }
      case 'token': {
        const [name] = expectPositionals(rest, ['name']) as [string];
        print(await withStore(config, (pool) => accounts.backendToken(pool, accountName(name), values.rotate === true)));
        return 0;
      }
      case 'restart': {
        const [name] = expectPositionals(rest, ['name']) as [string];
        return restart(config, accountName(name), values['apache-pid-file']);
      }
      case 'exec': {
        if (process.getuid?.() !== 0) throw new UsageError("group exec switches to each group's run-as user: run it as root");
        const names = values.all ? (expectPositionals(rest, []), null) : [accountName((expectPositionals(rest, ['name']) as [string])[0])];
        const all = await withStore(config, (pool) => accounts.listAccounts(pool));
        const chosen = names === null ? all.filter((a) => a.enabled) : all.filter((a) => a.name === names[0]);
        if (names !== null && chosen.length === 0) throw new NotFoundError(`no daemon group "${names[0]}"`);
        // A pool's accounts run in its slots, with the binder's data directory (Apache's config says which).
        const served = readApacheConfigSlots(values['apache-config'] ?? DEFAULT_APACHE_CONFIG);
        const pool = served?.pool;
        const slots = served?.slots;
        if (slots !== undefined && pool === undefined)
          throw new UsageError(
            `${served!.path} serves a pool, but its binder's --state-dir and --data-dir cannot be read from it: render it again`,
          );
        if (pool && values['data-dir'] !== undefined && resolve(values['data-dir']) !== pool.dataDir)
          throw new UsageError(`the pool's accounts keep their data in ${pool.dataDir} (its binder's --data-dir); leave --data-dir out`);
        return execInAccounts(chosen, execCommand, {
          dataDir: pool?.dataDir ?? values['data-dir'] ?? DEFAULT_DATA_DIR,
          pythonPath: values['python-path'] ?? pool?.pythonPath ?? DEFAULT_PYTHON_PATH,
          // In a pool each command holds a slot another account may be using: a quarter of them at most.
          jobs:
            values.jobs === undefined
              ? pool
                ? Math.max(1, Math.min(4, Math.floor((slots ?? 1) / 4)))
                : 4
              : parseWholeNumber(values.jobs, '--jobs'),
          ...(pool ? { pool: { stateDir: pool.stateDir, prefix: pool.prefix } } : {}),
        });
      }
      default:
        throw new UsageError(`unknown group action "${action}"; see plexer group --help`);
    }
  },
};
