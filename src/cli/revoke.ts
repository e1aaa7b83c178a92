// `plexer revoke`: removes cached logins from Apache's login cache (memcached, `apache config --login-cache`) as soon
// as the store says a user changed. Apache runs it as a piped logger (as root: it reaches the cache's socket,
// which tenants cannot), restarts it when it dies and replaces it at every graceful reload.
import { createInterface } from 'node:readline';
import { loadConfig } from '../config.js';
import { coerceError, UsageError } from '../errors.js';
import { createLogger, setLogLevel } from '../log.js';
import { applyLoginChange, revokeUser } from '../logins/revocation.js';
import { MemcacheClient } from '../logins/memcache.js';
import { createClient, createPool } from '../store/connect.js';
import { listenForChanges } from '../store/listener.js';
import { changesChannel } from '../store/sql.js';
import { parseCommand, parseWholeNumber } from './args.js';
import { print, type Command } from './command.js';

const help = `Usage: plexer revoke --socket PATH --cache-seconds N [--config FILE]

Keeps Apache's login cache honest (apache/LOGINS.md: "Logins that survive a reload"). Apache keeps each successful login in
memcached (AuthnCacheSOCache memcache:PATH) for AuthnCacheTimeout (N) seconds, across graceful reloads; this
removes a user's cached logins the moment the store says the user changed — password, disabled, deleted, with the
CLI or plain SQL (LISTEN/NOTIFY) — so the old password is refused at the next request and the new one is checked.
When it (re)connects to the store it may have missed changes: it removes the cached logins of every user changed
since a revoker was last known to be listening (a note it keeps in the cache, every second; without one, the last
N seconds). Apache starts it as a piped logger (as root) and writes nothing to it.`;

// The note: until when (the database's clock, ms) every change is known to have been seen by a revoker.
const LISTENED_KEY = 'plexer-revoke:listened-until';
const HEARTBEAT_MS = 1_000;
// What may still have been on its way when the note was written (a NOTIFY queued, the old revoker ending).
const MARGIN_SECONDS = 5;

export const command: Command = {
  summary: 'removes changed users from the login cache (run by Apache as a piped logger)',
  help,
  async run(argv) {
    const { values } = parseCommand(argv, { socket: { type: 'string' }, 'cache-seconds': { type: 'string' } });
    if (values.help) return (print(help), 0);
    const socket = values.socket;
    if (!socket?.startsWith('/')) throw new UsageError('--socket (an absolute path) is required');
    const cacheSeconds = parseWholeNumber(values['cache-seconds'] ?? '', '--cache-seconds');
    const log = createLogger('revoke');
    const config = loadConfig({ path: values.config });
    setLogLevel(config.logLevel);
    const cache = new MemcacheClient(socket);
    const db = createPool(config, { applicationName: 'plexer-revoke', connectTimeoutMs: 3_000, max: 1 });
    db.on('error', (error) => log.warn('idle database connection lost', { error: error.message }));

    // One job at a time, in order: a change, the catch-up after a reconnect and the note never interleave.
    let queue: Promise<void> = Promise.resolve();
    const enqueue = (job: () => Promise<void>) => (queue = queue.then(job));
    let caughtUp = false;

    // Changes made while nobody listened (this process starting, or its LISTEN connection lost) are unknown:
    // every user changed since then loses their cached logins.
    const catchUp = async () => {
      try {
        const note = await cache.get(LISTENED_KEY).catch(() => undefined);
        const since = note !== undefined && /^\d+$/.test(note) ? Number(note) / 1000 - MARGIN_SECONDS : null;
        const changed = await db.query<{ name: string }>(
          since === null
            ? 'SELECT name FROM users WHERE updated_at > now() - make_interval(secs => $1)'
            : 'SELECT name FROM users WHERE updated_at > to_timestamp($1)',
          [since ?? cacheSeconds],
        );
        let removed = 0;
        for (const { name } of changed.rows) removed += await revokeUser(cache, name);
        log.info('caught up', { changed: changed.rows.length, removed, since: since === null ? 'cache-lifetime' : 'last-revoker' });
        caughtUp = true;
      } catch (error) {
        log.error('cannot catch up with missed changes', { error: coerceError(error).message });
      }
    };
    const listener = listenForChanges({
      connect: () => createClient(config, { applicationName: 'plexer-revoke-listen' }),
      channel: changesChannel(config.schema),
      log,
      onListening: () => {
        caughtUp = false;
        enqueue(catchUp);
      },
      onChange: (payload) => enqueue(() => applyLoginChange(cache, payload, log)),
    });
    // While listening and caught up, every change up to now has been seen: noted for the next revoker.
    const heartbeat = setInterval(() => {
      if (!caughtUp || !listener.isListening()) return;
      enqueue(async () => {
        try {
          const now = await db.query<{ ms: string }>('SELECT (extract(epoch FROM now()) * 1000)::bigint AS ms');
          await cache.set(LISTENED_KEY, String(now.rows[0]!.ms), cacheSeconds);
        } catch (error) {
          log.warn('cannot note the time listened until', { error: coerceError(error).message });
        }
      });
    }, HEARTBEAT_MS);
    log.info('revoke started', { socket, cache_seconds: cacheSeconds });
    // Apache closes the pipe at a stop or a graceful reload (the new generation's revoker takes over).
    const lines = createInterface({ input: process.stdin, crlfDelay: Infinity });
    lines.on('line', () => undefined);
    await new Promise<void>((resolve) => lines.on('close', resolve));
    clearInterval(heartbeat);
    await listener.close();
    await queue;
    cache.close();
    await db.end();
    log.info('revoke stopped');
    return 0;
  },
};
