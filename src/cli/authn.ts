// `plexer authn`: the process mod_authnz_external forks for every password check Apache's cache does not answer.
// With --checker it is a thin client of `plexer checker` (a long-running process Apache starts, holding the
// store's connections, bcrypt's threads and a cache of passwords checked recently): this module then loads
// nothing but the socket and the input, and the check costs the checker's work alone. When the checker cannot be
// reached, the check runs here as it always did (authn-direct.ts).
import net from 'node:net';
import { decodeAnswer, encodeRequest, type CheckRequest } from '../checker/wire.js';
import { loadConfig } from '../config.js';
import { coerceError } from '../errors.js';
import { createLogger } from '../log.js';
import { leaveExcuse } from '../lockout/excuses.js';
import { PipeInputError, readPipeInput, type PipeInput } from '../protocol/authnz-external.js';
import { parseCommand } from './args.js';
import { AuthExit } from './auth-exit.js';
import { print, type Command } from './command.js';
import { checkedUser } from './authn-subject.js';

const help = `Usage: plexer authn [--counted-by-log [--lock-dir DIR]] [--checker SOCKET] [--config FILE]

mod_authnz_external authenticator ("pipe" method): reads the user name and the password, one line each, on
stdin. Exit status (Apache logs it as "Failed (N)"):
  0 accepted   ${AuthExit.BadInput} malformed input   ${AuthExit.NoSuchUser} no such user   ${AuthExit.WrongPassword} wrong password
  ${AuthExit.Disabled} user disabled   ${AuthExit.LockedOut} locked out after too many failures   ${AuthExit.StoreError} store unreachable or internal error   ${AuthExit.TimedOut} own time limit (authn_timeout_ms) reached
  DefineExternalAuth plexer pipe "/usr/bin/node /opt/plexer/bin/plexer authn --config /etc/plexer/plexer.conf"
--counted-by-log: a refusal is not counted here, because \`plexer lockout\` counts every 401 from Apache's log
(the generated config runs both); lockouts are still checked. With --lock-dir (plexer lockout's), a refusal
given without comparing the password (${AuthExit.StoreError}, ${AuthExit.TimedOut}) leaves an excuse there, so the lockout does not count it.
--checker SOCKET: ask \`plexer checker\` on SOCKET (apache config --login-checker) and end with its answer; when
nothing answers there, check here.`;

export const command: Command = {
  summary: 'mod_authnz_external password check (pipe)',
  help,
  async run(argv) {
    const { values } = parseCommand(argv, {
      'counted-by-log': { type: 'boolean' },
      'lock-dir': { type: 'string' },
      checker: { type: 'string' },
    });
    if (values.help) return (print(help), 0);
    const countedByLog = values['counted-by-log'] === true;
    const lockDir = values['lock-dir'];
    // Whichever way authn ends (its timer exits from anywhere): a refusal without a verdict is excused.
    if (countedByLog && lockDir !== undefined) {
      process.once('exit', (code) => {
        const ip = process.env.IP;
        if ((code === AuthExit.StoreError || code === AuthExit.TimedOut) && checkedUser.name !== undefined && ip)
          leaveExcuse(lockDir, checkedUser.name, ip);
      });
    }
    let input: PipeInput | undefined;
    if (values.checker !== undefined) {
      const asked = await askChecker(values.checker, values.config, countedByLog);
      if (typeof asked === 'number') process.exit(asked);
      input = asked;
    }
    const { authenticateHere } = await import('./authn-direct.js');
    process.exit(await authenticateHere(values.config, countedByLog, input));
  },
};

// The checker's exit status; or, when it cannot be reached, the input read, for the check to run here.
async function askChecker(socket: string, configPath: string | undefined, countedByLog: boolean): Promise<number | PipeInput> {
  const log = createLogger('authn');
  let timeoutMs: number;
  try {
    timeoutMs = loadConfig({ path: configPath }).authnTimeoutMs;
  } catch (error) {
    log.error('configuration error', { error: coerceError(error).message });
    return AuthExit.StoreError;
  }
  // Apache waits with no time limit and holds a worker meanwhile.
  setTimeout(() => {
    log.error('time limit reached; refusing', { limit_ms: timeoutMs });
    process.exit(AuthExit.TimedOut);
  }, timeoutMs).unref();
  let input: PipeInput;
  try {
    input = await readPipeInput(process.stdin, timeoutMs);
  } catch (error) {
    if (!(error instanceof PipeInputError)) throw error;
    log.warn('login refused', { reason: 'bad-input', detail: error.message, ip: process.env.IP });
    return AuthExit.BadInput;
  }
  checkedUser.name = input.first;
  const request: CheckRequest = {
    user: input.first,
    password: input.second,
    count: !countedByLog,
    ...(process.env.IP ? { ip: process.env.IP } : {}),
  };
  const answer = await exchange(socket, request);
  if (answer !== null) return answer;
  log.warn('checker unreachable; checking here', { socket });
  return input;
}

// null: nothing answered (no socket, refused, closed without an answer).
function exchange(path: string, request: CheckRequest): Promise<number | null> {
  return new Promise((resolve) => {
    const socket = net.createConnection(path);
    let text = '';
    socket.setEncoding('utf8');
    socket.on('connect', () => socket.write(encodeRequest(request)));
    socket.on('data', (chunk: string) => (text += chunk));
    socket.on('error', () => resolve(null));
    socket.on('close', () => resolve(decodeAnswer(text.trim())));
  });
}
