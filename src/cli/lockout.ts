import { UsageError } from '../errors.js';
import { runLockoutLogger } from '../lockout/daemon.js';
import { parseCommand } from './args.js';
import { print, type Command } from './command.js';

const help = `Usage: plexer lockout --lock-dir DIR [--refusal-page FILE] [--user USER] [--config FILE]

Counts the failed logins Apache refuses itself and keeps lockouts where Apache can see them. mod_authn_socache
answers a wrong password for a user it has cached without asking plexer, so those guesses would never count.
This runs as one of Apache's piped loggers (Apache starts it as root and restarts it if it dies), fed one line
"USER ADDRESS" per 401 answer that carried a user name, and:
  - counts each as a failed login (the same limits as plexer authn: the user from that address, the address,
    the user name at a much higher count), through the helpers' role;
  - keeps one empty file per lockout in force in DIR (DIR/user/NAME, DIR/ip/ADDRESS, DIR/pair/ADDRESS/NAME),
    from the store's lockouts channel, so every front end and \`plexer user unlock\` count; the generated config
    refuses a request whose file exists, even when the cache would accept its password.
With --refusal-page it also serves FILE (the 401 page) on the unix socket DIR/refused.sock, which the generated
Basic sections use as their ErrorDocument 401 through mod_proxy: each refusal is counted, and its lock file made,
before Apache sends the 401, so a guesser's next request cannot outrun the count (the log line that follows
then only takes it to the store). After creating DIR it runs as USER (default www-data). DIR is refused when
anyone but root could have put something in its way: a symbolic link on the path, a directory above it that
is not root's or that others may write (unless sticky, as /tmp and /dev/shm), or DIR itself owned by another
user. It exits when Apache closes the pipe. The generated config starts it:
  CustomLog "|/usr/bin/node /opt/plexer/bin/plexer lockout --lock-dir /run/plexer/locks --config …" "%<u %a" "expr=%{REQUEST_STATUS} == 401 && -z %{ENV:PLEXER_LOGGED_IN}"`;

export const command: Command = {
  summary: 'counts failed logins Apache refused itself and keeps lock files (run by Apache as a piped logger)',
  help,
  async run(argv) {
    const { values } = parseCommand(argv, {
      'lock-dir': { type: 'string' },
      'refusal-page': { type: 'string' },
      user: { type: 'string' },
    });
    if (values.help) return (print(help), 0);
    const lockDir = values['lock-dir'];
    if (!lockDir?.startsWith('/')) throw new UsageError('--lock-dir DIR (absolute) is required');
    return runLockoutLogger({ lockDir, pageFile: values['refusal-page'], user: values.user ?? 'www-data', configPath: values.config });
  },
};
