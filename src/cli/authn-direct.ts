// The password check `plexer authn` runs in its own process: when no checker is configured, or the checker cannot
// be reached. It loads what a check needs (the store's driver, bcrypt), which is most of authn's cost.
import type { PlexerConfig } from '../config.js';
import { checkPassword, refuseOnError } from '../auth/password-check.js';
import type { Logger } from '../log.js';
import { hashPassword, verifyPassword } from '../password.js';
import type { PipeInput } from '../protocol/authnz-external.js';
import { throttleOf } from '../store/throttle.js';
import { AuthExit, passwordExit } from './auth-exit.js';
import { checkedUser } from './authn-subject.js';
import { helperStore, readHelperInput, startPipeHelper } from './pipe-helper.js';

// input: what mod_authnz_external wrote, when the caller read it already (on its way to a checker).
export async function authenticateHere(configPath: string | undefined, countedByLog: boolean, input?: PipeInput): Promise<number> {
  const started = startPipeHelper('authn', configPath);
  if (!started) return AuthExit.StoreError;
  const { config, log } = started;
  const ip = process.env.IP;
  const read = input ?? (await readHelperInput(config, log, 'login refused', { ip }));
  if (!read) return AuthExit.BadInput;
  checkedUser.name = read.first;
  return check(config, log, countedByLog, read.first, read.second, ip);
}

async function check(
  config: PlexerConfig,
  log: Logger,
  countedByLog: boolean,
  user: string,
  password: string,
  ip: string | undefined,
): Promise<number> {
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
    return passwordExit(checked);
  } catch (error) {
    refuseOnError(log, error, user, ip);
    return AuthExit.StoreError;
  } finally {
    db.end().catch(() => undefined);
  }
}
