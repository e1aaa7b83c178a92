import type { PlexerConfig } from '../config.js';
import { noRole, roleCheckFailed, rolesToCheck } from '../auth/role-check.js';
import type { Logger } from '../log.js';
import { hasAnyRole } from '../store/credentials.js';
import { AuthExit } from './auth-exit.js';
import { parseCommand } from './args.js';
import { print, type Command } from './command.js';
import { helperStore, readHelperInput, startPipeHelper } from './pipe-helper.js';

const help = `Usage: plexer authz [--config FILE]

mod_authnz_external group checker ("pipe" method) for "Require external-group ROLE …": reads the user name,
then the space-separated roles from the Require line, one line each. Exit 0 when the user is enabled and holds
any of them; ${AuthExit.NoRole} when not; ${AuthExit.BadInput} malformed input; ${AuthExit.StoreError} store unreachable; ${AuthExit.TimedOut} time limit.
  DefineExternalGroup plexer-roles pipe "/usr/bin/node /opt/plexer/bin/plexer authz --config /etc/plexer/plexer.conf"`;

export const command: Command = {
  summary: 'mod_authnz_external role check (GroupExternal, pipe)',
  help,
  async run(argv) {
    const { values } = parseCommand(argv, {});
    if (values.help) return (print(help), 0);
    const started = startPipeHelper('authz', values.config);
    if (!started) return AuthExit.StoreError;
    process.exit(await checkRoles(started.config, started.log));
  },
};

async function checkRoles(config: PlexerConfig, log: Logger): Promise<number> {
  const input = await readHelperInput(config, log, 'role check refused');
  if (!input) return AuthExit.BadInput;
  const { first: user, second: roleLine } = input;
  const roles = rolesToCheck(
    log,
    user,
    roleLine.split(/\s+/).filter((role) => role !== ''),
  );
  if (!roles) return AuthExit.BadInput;
  const db = helperStore(config, 'plexer-authz');
  try {
    if (await hasAnyRole(db, user, roles)) return AuthExit.Accepted;
    noRole(log, user, roles);
    return AuthExit.NoRole;
  } catch (error) {
    roleCheckFailed(log, error, user);
    return AuthExit.StoreError;
  } finally {
    db.end().catch(() => undefined);
  }
}
