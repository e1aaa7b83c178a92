// `plexer revoke`: removes cached logins from Apache's login cache (memcached, `apache config --login-cache`) as soon
// as the store says a user changed. Apache runs it as a piped logger (as root: it reaches the cache's socket,
// which tenants cannot), restarts it when it dies and replaces it at every graceful reload.
import { createInterface } from 'node:readline';
import { loadConfig } from '../config.js';
import { coerceError, UsageError } from '../errors.js';
import { createLogger, setLogLevel } from '../log.js';
import { revocationFor, revoke, revokeUser } from '../logins/revocation.js';
import { MemcacheClient } from '../logins/memcache.js';
import { createClient, createPool } from '../store/connect.js';
import { listenForChanges } from '../store/listener.js';
import { changesChannel } from '../store/sql.js';
import { parseCommand, parseWholeNumber } from './args.js';
import { print, type Command } from './command.js';

const help = `Usage: plexer revoke --socket PATH --cache-seconds N [--config FILE]

Keeps Apache's login cache honest (apache/LOGINS.md, "Logins that survive a reload"). Apache keeps each
successful login in memcached (AuthnCacheSOCache memcache:PATH) for AuthnCacheTimeout (N) seconds, across graceful
reloads; this removes a user's cached logins the moment the store says the user changed — password, disabled,
deleted, with the CLI or plain SQL (LISTEN/NOTIFY) — so the old password is refused at the next request and the
new one is checked; and once more after authn_timeout_ms, for a check of the old password that was already
running then and stored its success after the first removal. A removal that fails is tried again every second,
and no progress is noted meanwhile. When it (re)connects to the store it may have missed changes: it removes the
cached logins of every user changed since a revoker was last known to be listening (a note it keeps in the cache,
every second, less a minute; without one, the last N seconds). Apache starts it as a piped logger (as root) and
writes nothing to it.`;

// The note: until when (the database's clock, ms) every change is known to have been seen by a revoker.
const LISTENED_KEY = 'plexer-revoke:listened-until';
const HEARTBEAT_MS = 1_000;
// What may still have been on its way when the note was written: a NOTIFY queued, the old revoker ending, and a
// transaction that stamped updated_at when it began and committed later.
const MARGIN_SECONDS = 60;

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

    // One job at a time, in order: changes, catch-ups, retries and the note never interleave.
    let queue: Promise<void> = Promise.resolve();
    const enqueue = (job: () => Promise<void>) => (queue = queue.then(job));
    let caughtUp = false;
    // Users whose removal failed (memcached unreachable): tried again every second; while any is left, no
    // progress is noted, so a revoker starting meanwhile removes them too.
    const failed = new Set<string>();
    let failedAll = false;

    const removeUser = async (user: string, why: string) => {
      try {
        if ((await revokeUser(cache, user)) > 0) log.info('cached login removed', { user, why });
        failed.delete(user);
      } catch (error) {
        if (!failed.has(user)) log.error('cannot remove a cached login; trying again', { user, error: coerceError(error).message });
        failed.add(user);
      }
    };

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
        for (const { name } of changed.rows) await removeUser(name, 'catch-up');
        log.info('caught up', { changed: changed.rows.length, since: since === null ? 'cache-lifetime' : 'last-revoker' });
        caughtUp = true;
      } catch (error) {
        log.error('cannot catch up with missed changes; trying again', { error: coerceError(error).message });
      }
    };

    const onChange = (payload: string) => {
      const revocation = revocationFor(payload);
      if (!revocation) return;
      if (revocation.kind === 'user') {
        enqueue(() => removeUser(revocation.user, 'changed'));
        // A check of the old password that was running when the user changed may store its success after the
        // removal: once every such check has ended (authn_timeout_ms), the entries go again.
        setTimeout(() => enqueue(() => removeUser(revocation.user, 'changed, second pass')), config.authnTimeoutMs + 1_000).unref();
        return;
      }
      enqueue(async () => {
        try {
          await revoke(cache, revocation);
          failedAll = false;
          log.info('login cache emptied', { why: 'users truncated' });
        } catch (error) {
          failedAll = true;
          log.error('cannot empty the login cache; trying again', { error: coerceError(error).message });
        }
      });
    };

    const listener = listenForChanges({
      connect: () => createClient(config, { applicationName: 'plexer-revoke-listen' }),
      channel: changesChannel(config.schema),
      log,
      onListening: () => {
        caughtUp = false;
        enqueue(catchUp);
      },
      onChange,
    });

    // Every second: what failed is tried again; a catch-up that failed runs again; and while listening, caught up
    // and with nothing left to remove, every change up to now has been seen: noted for the next revoker.
    let beating = false;
    const heartbeat = setInterval(() => {
      // One at a time: with memcached slow to answer, beats must not pile up in the queue.
      if (beating) return;
      beating = true;
      enqueue(async () => {
        for (const user of failed) await removeUser(user, 'retry');
        if (failedAll) onChange('*');
        if (!listener.isListening()) return;
        if (!caughtUp) return catchUp();
        if (failed.size > 0 || failedAll) return;
        try {
          const now = await db.query<{ ms: string }>('SELECT (extract(epoch FROM now()) * 1000)::bigint AS ms');
          if (listener.isListening()) await cache.set(LISTENED_KEY, String(now.rows[0]!.ms), cacheSeconds);
        } catch (error) {
          log.warn('cannot note the time listened until', { error: coerceError(error).message });
        }
      }).finally(() => (beating = false));
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
