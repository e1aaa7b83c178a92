import type pg from 'pg';
import type { Logger } from '../log.js';
import { quoteIdentifier } from './sql.js';
import { coerceError } from '../errors.js';

export interface ChangeListenerOptions {
  connect: () => pg.Client;
  channel: string;
  onChange: (payload: string) => void;
  // Called after every (re)connection once LISTEN is in place: changes made while disconnected were not
  // heard, so whatever the caller derived from the store must be dropped or rebuilt.
  onListening: () => void;
  log: Logger;
  minBackoffMs?: number;
  maxBackoffMs?: number;
  // 0..1, default Math.random: each wait is drawn between half the backoff and all of it, so that the front ends
  // that lost PostgreSQL together do not all come back in the same millisecond.
  random?: () => number;
}

export interface ChangeListener {
  close(): Promise<void>;
  isListening(): boolean;
}

// A dedicated connection holding LISTEN, reconnecting with capped exponential backoff and jitter (no busy loop
// while the server is down, no stampede when it comes back).
export function listenForChanges(options: ChangeListenerOptions): ChangeListener {
  const minBackoff = options.minBackoffMs ?? 100;
  const maxBackoff = options.maxBackoffMs ?? 5_000;
  let backoff = minBackoff;
  const random = options.random ?? Math.random;
  let client: pg.Client | undefined;
  let listening = false;
  let closed = false;
  let retryTimer: NodeJS.Timeout | undefined;
  let failures = 0;

  const scheduleReconnect = (reason: string) => {
    if (closed || retryTimer) return;
    const delay = Math.round(backoff * (0.5 + 0.5 * random()));
    if (listening || failures === 0) options.log.warn('listen connection lost', { reason, retry_ms: delay });
    listening = false;
    failures++;
    backoff = Math.min(backoff * 2, maxBackoff);
    retryTimer = setTimeout(() => {
      retryTimer = undefined;
      void connect();
    }, delay);
  };

  const connect = async () => {
    const next = options.connect();
    client = next;
    next.on('notification', (message) => {
      if (message.channel === options.channel && message.payload !== undefined) options.onChange(message.payload);
    });
    // An old connection's late events must not start a second reconnect loop.
    next.on('error', (error) => client === next && scheduleReconnect(error.message));
    next.on('end', () => client === next && scheduleReconnect('connection ended'));
    try {
      await next.connect();
      await next.query(`LISTEN ${quoteIdentifier(options.channel)}`);
    } catch (error) {
      next.end().catch(() => undefined);
      scheduleReconnect(coerceError(error).message);
      return;
    }
    if (closed) {
      await next.end().catch(() => undefined);
      return;
    }
    if (failures > 0) options.log.info('listen connection restored', { after_attempts: failures });
    failures = 0;
    backoff = minBackoff;
    listening = true;
    // From here on a change is heard: tests and operators wait for this line, not for a guessed delay.
    options.log.info('listening for changes', { channel: options.channel });
    options.onListening();
  };

  void connect();

  return {
    isListening: () => listening,
    async close() {
      closed = true;
      if (retryTimer) clearTimeout(retryTimer);
      listening = false;
      await client?.end().catch(() => undefined);
    },
  };
}
