import { MessageChannel, Worker } from 'node:worker_threads';
import { loadConfig, type PlexerConfig } from '../config.js';
import { PlexerError, UsageError } from '../errors.js';
import { createLogger, setLogLevel, type Logger } from '../log.js';
import { createMapLookup } from '../lookup/map-lookup.js';
import type { StoreThreadData } from '../lookup/store-thread.js';
import { serveRewriteMapLoop } from '../protocol/rewrite-map.js';
import type { PrgMapKind } from '../store/map-queries.js';
import { parseCommand } from './args.js';
import { print, type Command } from './command.js';
import { StdoutClosedError, stdioMapIo } from './map-stdio.js';

const help = `Usage: plexer map group|settings|backend|route [--config FILE]

A RewriteMap prg: program for mod_rewrite. Reads one key per line on stdin and writes exactly one answer line
per key, in order, marked and naming the key it answers: "#KEY=VALUE", or "#KEY=" when there is no answer
(unknown or disabled user, disabled group, invalid key, no value, or the store did not answer within
map_deadline_ms and nothing is cached). The generated rules route only on an answer that is "#" + the key
they asked + "=": an answer left in the pipe by a worker that died mid-lookup routes nobody.
  group     user name  -> daemon group name   (WSGIProcessGroup)
  settings  group name -> settings module     (DJANGO_SETTINGS_MODULE)
  backend   user name  -> backend target      (mod_proxy URL)
  route     user name  -> "GROUP SETTINGS"    (both for one request in one lookup; "GROUP" alone when the
                                               group has no settings module)
Apache starts it with an empty environment: give --config with an absolute path. It exits when stdin closes.
  RewriteMap plexer_group "prg:/usr/bin/node /opt/plexer/bin/plexer map group --config /etc/plexer/plexer.conf" www-data:www-data`;

const STARTUP_WAIT_MS = 1_000;

const kinds: readonly PrgMapKind[] = ['group', 'settings', 'backend', 'route'];

export const command: Command = {
  summary: 'RewriteMap prg: program (group, settings, backend or route)',
  help,
  async run(argv) {
    const { values, positionals } = parseCommand(argv, {});
    if (values.help) return (print(help), 0);
    const kind = positionals[0] as PrgMapKind;
    if (positionals.length !== 1 || !kinds.includes(kind))
      throw new UsageError('expected one of: map group, map settings, map backend, map route');
    const log = createLogger(`map.${kind}`);
    // The map must never exit on its own: mod_rewrite does not restart it, and every later lookup would get
    // an empty answer. Whatever escapes is logged and the loop goes on.
    process.on('uncaughtException', (error) => log.error('unexpected error', { error: error.message }));
    process.on('unhandledRejection', (error) => log.error('unexpected rejection', { error: String(error) }));

    let config: PlexerConfig;
    try {
      config = loadConfig({ path: values.config });
    } catch (error) {
      if (!(error instanceof PlexerError)) throw error;
      // Exiting would leave Apache answering "" to every lookup; answering "#KEY=" keeps its error pages working.
      log.error('configuration error: answering no value to every key until Apache restarts', { error: error.message });
      return answerUntilEof(log, () => null) ?? 2;
    }
    setLogLevel(config.logLevel);
    return serveFromStore(kind, config, log);
  },
};

// Runs the blocking loop until Apache closes stdin (undefined) or stdout (0).
function answerUntilEof(log: Logger, answerKey: (key: string) => string | null): number | undefined {
  try {
    serveRewriteMapLoop(stdioMapIo, answerKey);
  } catch (error) {
    if (!(error instanceof StdoutClosedError)) throw error;
    log.warn('stdout closed by Apache; map exiting');
    return 0;
  }
  log.info('stdin closed; map exiting');
  return undefined;
}

function serveFromStore(kind: PrgMapKind, config: PlexerConfig, log: Logger): number {
  const { port1, port2 } = new MessageChannel();
  const signal = new Int32Array(new SharedArrayBuffer(4));
  const data: StoreThreadData = { kind, config, port: port2, signal };
  const store = new Worker(new URL('../lookup/store-thread.js', import.meta.url), { workerData: data, transferList: [port2] });
  log.info('map started', { kind, deadline_ms: config.mapDeadlineMs, cache_max: config.cacheMax });
  // Apache's first keys would otherwise meet a store thread still booting and connecting (longer than the
  // deadline on a busy machine) and be answered with no value: wait for its first word, briefly. Keys wait in
  // the pipe meanwhile; well under the 2 s after which the watchdog kills a map that keeps a worker waiting.
  Atomics.wait(signal, 0, 0, STARTUP_WAIT_MS);
  const lookup = createMapLookup(kind, {
    link: { port: port1, signal },
    max: config.cacheMax,
    ttlMs: config.cacheTtlMs,
    deadlineMs: config.mapDeadlineMs,
  });
  const code = answerUntilEof(log, lookup) ?? 0;
  // EOF means Apache is gone: never linger, even if a connection is slow to close.
  void store.terminate();
  setTimeout(() => process.exit(code), 1_000).unref();
  return code;
}
