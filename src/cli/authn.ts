import { loadConfig, type PlexerConfig } from '../config.js';
import { createLogger, setLogLevel, type LogFields, type Logger } from '../log.js';
import { isUserName } from '../names.js';
import { bcryptCost, dummyHash, hashPassword, refusalNeedsPadding, verifyPassword } from '../password.js';
import { PipeInputError, readPipeInput } from '../protocol/authnz-external.js';
import { createClient } from '../store/connect.js';
import { fetchCredential, upgradePasswordHash } from '../store/credentials.js';
import { clearOnSuccess, clientAddress, countFailure, lockedNow, subjectsOf, throttleOf } from '../store/throttle.js';
import { parseCommand } from './args.js';
import { print, type Command } from './command.js';
import { AuthExit } from './auth-exit.js';

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
    if (values.help) return print(help), 0;
    const log = createLogger('authn');
    let config: PlexerConfig;
    try {
      config = loadConfig({ path: values.config });
    } catch (error) {
      log.error('configuration error', { error: (error as Error).message });
      return AuthExit.StoreError;
    }
    setLogLevel(config.logLevel);
    // Apache waits for this process with no timeout and holds a worker meanwhile.
    setTimeout(() => {
      log.error('time limit reached; refusing', { limit_ms: config.authnTimeoutMs });
      process.exit(AuthExit.TimedOut);
    }, config.authnTimeoutMs).unref();
    const code = await authenticate(config, log, values['counted-by-log'] === true);
    process.exit(code);
  },
};

async function authenticate(config: PlexerConfig, log: Logger, countedByLog: boolean): Promise<number> {
  const ip = process.env.IP;
  let user: string;
  let password: string;
  try {
    ({ first: user, second: password } = await readPipeInput(process.stdin, config.authnTimeoutMs));
  } catch (error) {
    if (!(error instanceof PipeInputError)) throw error;
    log.warn('login refused', { reason: 'bad-input', detail: error.message, ip });
    return AuthExit.BadInput;
  }
  if (!isUserName(user)) {
    await verifyPassword(password, dummyHash(config.bcryptCost));
    log.warn('login refused', { reason: 'invalid-user-name', ip });
    return AuthExit.BadInput;
  }
  const throttle = throttleOf(config);
  // The address comes from Apache: the connection's peer, or what mod_remoteip took from a trusted proxy.
  const subjects = subjectsOf(user, clientAddress(ip), throttle);
  const client = createClient(config, { applicationName: 'plexer-authn', connectTimeoutMs: Math.min(3_000, config.authnTimeoutMs) });
  client.on('error', () => undefined);
  try {
    await client.connect();
    const locked = await lockedNow(client, subjects, throttle);
    if (locked.length > 0) return refuse(log, 'locked-out', user, ip, AuthExit.LockedOut, { locked: locked.join(' ') });
    const credential = await fetchCredential(client, user);
    const verified = await verifyPassword(password, credential?.passwordHash ?? dummyHash(config.bcryptCost));
    if (!credential || !verified) {
      if (credential && refusalNeedsPadding(credential.passwordHash, config.bcryptCost)) {
        await verifyPassword(password, dummyHash(config.bcryptCost));
      }
      const reason = credential ? 'wrong-password' : 'no-such-user';
      if (!countedByLog) await countFailure(client, subjects, throttle, log);
      return refuse(log, reason, user, ip, credential ? AuthExit.WrongPassword : AuthExit.NoSuchUser);
    }
    if (credential.disabled) return refuse(log, 'disabled', user, ip, AuthExit.Disabled);
    await clearOnSuccess(client, subjects, throttle);
    const cost = bcryptCost(credential.passwordHash) ?? 0;
    if (cost < config.bcryptCost) {
      await upgradePasswordHash(client, user, credential.passwordHash, await hashPassword(password, config.bcryptCost));
      log.info('password rehashed at the configured cost', { user, from: cost, to: config.bcryptCost });
    }
    log.debug('login accepted', { user, ip });
    return AuthExit.Accepted;
  } catch (error) {
    log.error('cannot check password; refusing', { user, error: (error as Error).message, ip });
    return AuthExit.StoreError;
  } finally {
    client.end().catch(() => undefined);
  }
}

function refuse(log: Logger, reason: string, user: string, ip: string | undefined, code: number, extra: LogFields = {}): number {
  log.warn('login refused', { reason, user, ip, ...extra });
  return code;
}
