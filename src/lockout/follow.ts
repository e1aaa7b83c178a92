import type pg from 'pg';
import type { PlexerConfig } from '../config.js';
import type { Logger } from '../log.js';
import { createClient } from '../store/connect.js';
import { listenForChanges, type ChangeListener } from '../store/listener.js';
import { currentLockouts } from '../store/login-failures.js';
import { lockoutsChannel } from '../store/sql.js';
import { LockMirror } from './lock-mirror.js';
import { coerceError } from '../errors.js';

export interface FollowedLockouts {
  mirror: LockMirror;
  listener: ChangeListener;
  // The mirror may be trusted: LISTEN is up and the lockouts in force have been read since.
  live(): boolean;
}

// The lockouts in force, in memory, from the store's lockouts channel (migration 005). `onChange` runs after
// every change the mirror takes in: a message (given), or the full read after each (re)connection.
export function followLockouts(
  config: PlexerConfig,
  db: pg.Pool,
  log: Logger,
  onChange: (payload?: string) => void = () => undefined,
): FollowedLockouts {
  const mirror = new LockMirror();
  const listener = listenForChanges({
    connect: () => createClient(config, { applicationName: 'plexer-lockouts', connectTimeoutMs: 3_000 }),
    channel: lockoutsChannel(config.schema),
    onChange: (payload) => {
      mirror.apply(payload);
      onChange(payload);
    },
    onListening: () => {
      mirror.reset();
      currentLockouts(db)
        .then((rows) => {
          mirror.loaded(rows);
          onChange();
        })
        .catch((error: unknown) =>
          log.warn('cannot read the lockouts in force; will retry at the next reconnection', { error: coerceError(error).message }),
        );
    },
    log,
  });
  return { mirror, listener, live: () => mirror.ready && listener.isListening() };
}
