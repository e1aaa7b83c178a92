import type { PlexerConfig } from '../config.js';
import { checkPassword, refuseOnError } from '../auth/password-check.js';
import type { Logger } from '../log.js';
import { hashPassword, verifyPassword } from '../password.js';
import { throttleOf } from '../store/throttle.js';
import { parseCommand } from './args.js';
import { print, type Command } from './command.js';
import { AuthExit } from './auth-exit.js';
import { helperStore, readHelperInput, startPipeHelper } from './pipe-helper.js';

const help = `Usage: plexer authn [--counted-by-log] [--config FILE]

mod_authnz_external authenticator ("pipe" method): reads the user name and the password, one line each, on
stdin. Exit status (Apache logs it as "Failed (N)"):
  0 accepted   ${AuthExit.BadInput} malformed input   ${AuthExit.NoSuchUser} no such user   ${AuthExit.WrongPassword} wrong password
  ${AuthExit.Disabled} user disabled   ${AuthExit.LockedOut} locked out after too many failures   ${AuthExit.StoreError} store unreachable or internal error   ${AuthExit.TimedOut} own time limit (authn_timeout_ms) reached
  DefineExternalAuth plexer pipe "/usr/bin/node /opt/plexer/bin/plexer authn --config /etc/plexer/plexer.conf"
--counted-by-log: a refusal is not counted here, because \`plexer lockout\` counts every 401 from Apache's log
(the generated config runs both); lockouts are still checked.`;

export const command: Command = {
  summary: 'mod_authnz_external password check (pipe)',
  help,
  async run(argv) {
    const { values } = parseCommand(argv, { 'counted-by-log': { type: 'boolean' } });
    if (values.help) return (print(help), 0);
    const started = startPipeHelper('authn', values.config);
    if (!started) return AuthExit.StoreError;
    const code = await authenticate(started.config, started.log, values['counted-by-log'] === true);
    process.exit(code);
  },
};

// The exit status Apache logs ("Failed (N)") for each outcome of the check.
const exitFor: Record<string, number> = {
  verified: AuthExit.Accepted,
  'invalid-user-name': AuthExit.BadInput,
  'no-such-user': AuthExit.NoSuchUser,
  'wrong-password': AuthExit.WrongPassword,
  disabled: AuthExit.Disabled,
  'locked-out': AuthExit.LockedOut,
};

async function authenticate(config: PlexerConfig, log: Logger, countedByLog: boolean): Promise<number> {
  const ip = process.env.IP;
  const input = await readHelperInput(config, log, 'login refused', { ip });
  if (!input) return AuthExit.BadInput;
  const { first: user, second: password } = input;
  const db = helperStore(config, 'plexer-authn');
  try {
    const checked = await checkPassword(
      {
        db,
        log,
        throttle: throttleOf(config),
        bcryptCost: config.bcryptCost,
        countFailures: !countedByLog,
        verify: verifyPassword,
        hash: hashPassword,
      },
      user,
      password,
      ip,
    );
    await checked.rehashed;
    return exitFor[checked.reason] ?? AuthExit.StoreError;
  } catch (error) {
    refuseOnError(log, error, user, ip);
    return AuthExit.StoreError;
  } finally {
    db.end().catch(() => undefined);
  }
}
