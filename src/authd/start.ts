// The password service as a long-running process runs it (`plexer authd`, `plexer checker`): its own store
// connections, a LISTEN connection whose changes empty its caches, and lockouts followed in memory.
import type pg from 'pg';
import type { PlexerConfig } from '../config.js';
import { followLockouts } from '../lockout/follow.js';
import type { Logger } from '../log.js';
import { createClient, createPool } from '../store/connect.js';
import { listenForChanges } from '../store/listener.js';
import { changesChannel } from '../store/sql.js';
import { AuthService } from './service.js';

export interface RunningAuthService {
  service: AuthService;
  db: pg.Pool;
  // Closes the listeners, the service's threads and the store's connections, whatever fails.
  close(): Promise<void>;
}

// applicationName names its connections in pg_stat_activity (NAME, and NAME-listen for LISTEN).
export function startAuthService(config: PlexerConfig, log: Logger, applicationName: string): RunningAuthService {
  const db = createPool(config, {
    applicationName,
    connectTimeoutMs: Math.min(3_000, config.authnTimeoutMs),
    statementTimeoutMs: config.authnTimeoutMs,
  });
  db.on('error', (error) => log.warn('idle database connection lost', { error: error.message }));
  let service: AuthService | undefined;
  const listener = listenForChanges({
    connect: () => createClient(config, { applicationName: `${applicationName}-listen`, connectTimeoutMs: 3_000 }),
    channel: changesChannel(config.schema),
    onChange: (payload) => service?.onChange(payload),
    onListening: () => service?.clear(),
    log,
  });
  const lockouts = followLockouts(config, db, log);
  const started = new AuthService({
    db,
    config,
    log,
    listening: () => listener.isListening(),
    lockouts: lockouts.mirror,
    lockoutsLive: lockouts.live,
  });
  service = started;
  return {
    service: started,
    db,
    close: async () => {
      await Promise.allSettled([listener.close(), lockouts.listener.close(), started.close()]);
      await db.end().catch(() => undefined);
    },
  };
}
