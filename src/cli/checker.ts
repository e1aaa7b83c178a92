// `plexer checker`: the long-running password checker that `plexer authn --checker SOCKET` asks, so that a check
// costs a Node start and one round trip instead of loading the store's driver, connecting and running bcrypt in a
// fresh process each time. Apache runs it as a piped logger (as root; restarted if it dies, replaced at a graceful
// reload) and writes nothing to it. It is authd's service (authd/service.ts): a cache of passwords checked
// recently (emptied by the store's changes), bcrypt in worker threads, lockouts in memory.
import { createInterface } from 'node:readline';
import { startAuthService } from '../authd/start.js';
import { serveChecks } from '../checker/server.js';
import { loadConfig } from '../config.js';
import { UsageError } from '../errors.js';
import { createLogger, setLogLevel } from '../log.js';
import { listenOnPath, removeIfOwn } from '../socket-file.js';
import { apacheOwner } from '../tenant-users.js';
import { parseCommand } from './args.js';
import { print, type Command } from './command.js';

const help = `Usage: plexer checker --socket PATH [--config FILE]

The password checker \`plexer authn --checker PATH\` asks (apache config --login-checker): listens on PATH
(root:www-data 0660: Apache's workers, which fork authn), answers each check as authn would, with the same
lockouts and counting (a request says whether to count a refusal), from a cache of passwords checked recently
(emptied by the store's changes) or with bcrypt in worker threads. When it is not running, authn checks by
itself. Apache starts it as a piped logger (as root) and writes nothing to it.`;

export const command: Command = {
  summary: 'long-running password checker for plexer authn (run by Apache as a piped logger)',
  help,
  async run(argv) {
    const { values } = parseCommand(argv, { socket: { type: 'string' } });
    if (values.help) return (print(help), 0);
    const socket = values.socket;
    if (!socket?.startsWith('/')) throw new UsageError('--socket (an absolute path) is required');
    const log = createLogger('checker');
    const config = loadConfig({ path: values.config });
    setLogLevel(config.logLevel);
    const { service, close } = startAuthService(config, log, 'plexer-checker');
    const server = serveChecks(service, log, config.authnTimeoutMs);
    const inode = await listenOnPath(server, socket, apacheOwner().gid, 0o660);
    log.info('checker started', { socket });
    const lines = createInterface({ input: process.stdin, crlfDelay: Infinity });
    lines.on('line', () => undefined);
    await new Promise<void>((resolve) => lines.on('close', resolve));
    server.close();
    removeIfOwn(socket, inode);
    await close();
    log.info('checker stopped');
    return 0;
  },
};
