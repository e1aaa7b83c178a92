import { resolve } from 'node:path';
import { coerceError, UsageError } from '../errors.js';
import { createLogger } from '../log.js';
import { createClient, describeTarget } from '../store/connect.js';
import { changesChannel } from '../store/sql.js';
import { startSyncDaemon } from '../sync/daemon.js';
import { checkHttxt2dbm, checkMapDirectory, mapFileName, rebuildMapsDetailed, removeStaleTemps, HTTXT2DBM } from '../sync/maps.js';
import { parseCommand } from './args.js';
import { print, type Command } from './command.js';
import { loadCommandConfig } from './store-session.js';

const help = `Usage: plexer sync --dir DIR [--once] [--config FILE]

Keeps Apache's dbm: RewriteMap files in DIR current, so lookups never leave Apache:
  ${mapFileName('group').padEnd(13)} user name  -> daemon group name
  ${mapFileName('settings').padEnd(13)} group name -> settings module
  ${mapFileName('backend').padEnd(13)} user name  -> backend target
GDBM files written with ${HTTXT2DBM} (apache2-utils) into a temp file, fsynced, mode 0640 root:www-data, then renamed over
the old one: Apache never reads a half-written map. Disabled users and groups have no entry.
Rebuilds everything at start, after every reconnection, and shortly after each burst of changes (LISTEN).
When PostgreSQL is down the last good files stay in place and the store is retried with backoff.
  --once   rebuild once and exit: 0, or 1 when the store cannot be read
Exit status 2 on configuration errors (config file, DIR missing or not writable, no httxt2dbm); 0 on
SIGTERM/SIGINT, after a rebuild in progress has finished. One log line per rebuild on stderr.
Apache (the files must exist before it starts):
  RewriteMap plexer_group "dbm=gdbm:/var/lib/plexer/maps/group.map"`;

export const command: Command = {
  summary: 'keep dbm: RewriteMap files current from the store',
  help,
  async run(argv) {
    const { values, positionals } = parseCommand(argv, { dir: { type: 'string' }, once: { type: 'boolean' } });
    if (values.help) return (print(help), 0);
    if (positionals.length !== 0) throw new UsageError(`unexpected argument "${positionals[0]}"`);
    if (!values.dir) throw new UsageError('--dir DIR is required');
    const dir = resolve(values.dir);
    const config = loadCommandConfig(values.config);
    checkHttxt2dbm();
    await checkMapDirectory(dir);
    const log = createLogger('sync');
    const removed = removeStaleTemps(dir);
    if (removed > 0) log.info('removed temp files of an interrupted rebuild', { count: removed });
    const connect = () => createClient(config, { applicationName: 'plexer-sync', connectTimeoutMs: 5_000, statementTimeoutMs: 120_000 });

    if (values.once) {
      const client = connect();
      client.on('error', () => undefined);
      try {
        await client.connect();
        const result = await rebuildMapsDetailed(client, dir);
        log.info('maps rebuilt', { users: result.users, groups: result.groups, backends: result.backends, ms: result.ms, reason: 'once' });
        return 0;
      } catch (error) {
        log.error('rebuild failed; map files left as they were', { error: coerceError(error).message, store: describeTarget(config) });
        return 1;
      } finally {
        await client.end().catch(() => undefined);
      }
    }

    // A long-running service: nothing but a configuration error may end it with a failure status.
    process.on('uncaughtException', (error) => log.error('unexpected error', { error: error.stack ?? error.message }));
    process.on('unhandledRejection', (error) => log.error('unexpected rejection', { error: String(error) }));
    const daemon = startSyncDaemon({ dir, channel: changesChannel(config.schema), connect, log });
    log.info('sync started', { dir, store: describeTarget(config) });
    // Handlers stay installed: a second signal while the last rebuild finishes must not kill it halfway.
    const signal = await new Promise<NodeJS.Signals>((done) => {
      process.on('SIGTERM', () => done('SIGTERM'));
      process.on('SIGINT', () => done('SIGINT'));
    });
    log.info('stopping', { signal });
    await daemon.stop();
    log.info('sync stopped');
    return 0;
  },
};
