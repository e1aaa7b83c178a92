import { loadConfig, type PlexerConfig } from '../config.js';
import { PlexerError, UsageError } from '../errors.js';
import { createLogger, setLogLevel } from '../log.js';
import { applyChange } from '../lookup/invalidation.js';
import { createMapLookup } from '../lookup/map-lookup.js';
import { createResolver } from '../lookup/resolver.js';
import { serveRewriteMap } from '../protocol/rewrite-map.js';
import { createClient, createPool } from '../store/connect.js';
import { listenForChanges } from '../store/listener.js';
import { fetchMapValue, type MapKind } from '../store/map-queries.js';
import { changesChannel } from '../store/sql.js';
import { parseCommand } from './args.js';
import { print, type Command } from './command.js';

const help = `Usage: plexer map group|settings|backend [--config FILE]

A RewriteMap prg: program for mod_rewrite. Reads one key per line on stdin and writes exactly one answer line
per key, in order, marked and naming the key it answers: "#KEY=VALUE", or "#KEY=" when there is no answer
(unknown or disabled user, disabled group, invalid key, no value, or the store did not answer within
map_deadline_ms and nothing is cached). The generated rules route only on an answer that is "#" + the key
they asked + "=": an answer left in the pipe by a worker that died mid-lookup routes nobody.
  group     user name  -> daemon group name   (WSGIProcessGroup)
  settings  group name -> settings module     (DJANGO_SETTINGS_MODULE)
  backend   user name  -> backend target      (mod_proxy URL)
Apache starts it with an empty environment: give --config with an absolute path. It exits when stdin closes.
  RewriteMap plexergroup "prg:/usr/bin/node /opt/plexer/bin/plexer map group --config /etc/plexer/plexer.conf" www-data:www-data`;

const kinds: readonly MapKind[] = ['group', 'settings', 'backend'];

export const command: Command = {
  summary: 'RewriteMap prg: program (group, settings or backend)',
  help,
  async run(argv) {
    const { values, positionals } = parseCommand(argv, {});
    if (values.help) return print(help), 0;
    const kind = positionals[0] as MapKind;
    if (positionals.length !== 1 || !kinds.includes(kind)) throw new UsageError('expected one of: map group, map settings, map backend');
    const log = createLogger(`map.${kind}`);
    // The map must never exit on its own: mod_rewrite does not restart it, and every later lookup would get
    // an empty answer. Whatever escapes is logged and the loop goes on.
    process.on('uncaughtException', (error) => log.error('unexpected error', { error: error.message }));
    process.on('unhandledRejection', (error) => log.error('unexpected rejection', { error: String(error) }));
    process.stdout.on('error', (error) => {
      log.warn('stdout closed by Apache', { error: error.message });
      process.exit(0);
    });

    let config: PlexerConfig;
    try {
      config = loadConfig({ path: values.config });
    } catch (error) {
      if (!(error instanceof PlexerError)) throw error;
      // Exiting would leave Apache answering "" to every lookup; answering "KEY=" keeps its error pages working.
      log.error('configuration error: answering no value to every key until Apache restarts', { error: error.message });
      await serveRewriteMap(process.stdin, process.stdout, () => null);
      return 2;
    }
    setLogLevel(config.logLevel);
    return serveFromStore(kind, config, log);
  },
};

async function serveFromStore(kind: MapKind, config: PlexerConfig, log: ReturnType<typeof createLogger>): Promise<number> {
  const pool = createPool(config, {
    applicationName: `plexer-map-${kind}`,
    connectTimeoutMs: 5_000,
    statementTimeoutMs: Math.max(1_000, config.mapDeadlineMs * 20),
  });
  pool.on('error', (error) => log.warn('idle database connection lost', { error: error.message }));
  const resolver = createResolver({
    fetch: (key) => fetchMapValue(pool, kind, key),
    max: config.cacheMax,
    ttlMs: config.cacheTtlMs,
    deadlineMs: config.mapDeadlineMs,
    log,
  });
  const listener = listenForChanges({
    connect: () => createClient(config, { applicationName: `plexer-map-${kind}-listen`, connectTimeoutMs: 2_000 }),
    channel: changesChannel(config.schema),
    onChange: (payload) => applyChange(kind, resolver, payload),
    onListening: () => resolver.expireAll(),
    log,
  });
  // Connect and prepare before Apache's first key arrives: a cold connection takes longer than the deadline,
  // and that first lookup would otherwise be answered NULL.
  fetchMapValue(pool, kind, '-').catch(() => undefined);
  log.info('map started', { kind, deadline_ms: config.mapDeadlineMs, cache_max: config.cacheMax });
  const stop = () => {
    void listener.close();
    void pool.end();
  };
  await serveRewriteMap(process.stdin, process.stdout, createMapLookup(kind, resolver));
  log.info('stdin closed; map exiting');
  stop();
  // EOF means Apache is gone: never linger, even if a connection is slow to close.
  setTimeout(() => process.exit(0), 1_000).unref();
  return 0;
}
