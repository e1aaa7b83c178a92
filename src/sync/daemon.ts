// The long-running side of `plexer sync`: LISTEN for changes, coalesce bursts into one rebuild, rebuild in
// full at start and after every reconnection (notifications sent while disconnected are lost), and keep the
// last good files whenever the store cannot be read.
import type pg from 'pg';
import type { Logger } from '../log.js';
import { listenForChanges, type ChangeListener } from '../store/listener.js';
import { rebuildMapsDetailed, type RebuildDetails } from './maps.js';
import { coerceError } from '../errors.js';

export interface SyncDaemonOptions {
  dir: string;
  channel: string;
  // A fresh connection: one for LISTEN (inside listenForChanges) and one for the rebuild queries.
  connect: () => pg.Client;
  log: Logger;
  // How long the first change of a burst waits for the rest of it before a rebuild starts.
  coalesceMs?: number;
  minRetryMs?: number;
  maxRetryMs?: number;
  onRebuilt?: (result: RebuildDetails) => void;
}

export interface SyncDaemon {
  // Resolves once no rebuild is running; a rebuild in progress is finished, none is started afterwards.
  stop(): Promise<void>;
}

export function startSyncDaemon(options: SyncDaemonOptions): SyncDaemon {
  const { log, dir } = options;
  const coalesceMs = options.coalesceMs ?? 150;
  const minRetry = options.minRetryMs ?? 250;
  const maxRetry = options.maxRetryMs ?? 10_000;

  let stopping = false;
  let dirty = false;
  let reason = 'start';
  let timer: NodeJS.Timeout | undefined;
  let timerDue = 0;
  let running: Promise<void> | undefined;
  let retry = minRetry;
  let failures = 0;
  let client: pg.Client | undefined;
  let listenedBefore = false;

  const dropClient = () => {
    const old = client;
    client = undefined;
    old?.end().catch(() => undefined);
  };

  const queryClient = async (): Promise<pg.Client> => {
    if (client) return client;
    const next = options.connect();
    // A connection that dies between rebuilds is replaced at the next one.
    next.on('error', () => client === next && dropClient());
    next.on('end', () => client === next && (client = undefined));
    try {
      await next.connect();
    } catch (error) {
      next.end().catch(() => undefined);
      throw error;
    }
    client = next;
    return next;
  };

  // Arms the one timer, unless it is already due sooner.
  const arm = (delayMs: number) => {
    if (stopping || running) return;
    const due = Date.now() + delayMs;
    if (timer && timerDue <= due) return;
    if (timer) clearTimeout(timer);
    timerDue = due;
    timer = setTimeout(() => {
      timer = undefined;
      running = rebuild().finally(() => {
        running = undefined;
        if (dirty) arm(failures > 0 ? retry : coalesceMs);
      });
    }, delayMs);
  };

  const request = (why: string, delayMs: number) => {
    // A reconnection explains a rebuild better than the changes queued beside it.
    if (!dirty || why !== 'change') reason = why;
    dirty = true;
    arm(delayMs);
  };

  const rebuild = async () => {
    dirty = false;
    const why = reason;
    try {
      const result = await rebuildMapsDetailed(await queryClient(), dir);
      if (failures > 0) log.info('store readable again', { after_attempts: failures });
      failures = 0;
      retry = minRetry;
      log.info('maps rebuilt', { users: result.users, groups: result.groups, backends: result.backends, ms: result.ms, reason: why });
      options.onRebuilt?.(result);
    } catch (error) {
      dropClient();
      dirty = true;
      reason = 'retry';
      if (failures === 0 || failures % 10 === 0) {
        log.warn('rebuild failed; keeping the last good map files', {
          error: coerceError(error).message,
          retry_ms: retry,
          attempts: failures + 1,
        });
      }
      failures++;
      retry = Math.min(retry * 2, maxRetry);
    }
  };

  const listener: ChangeListener = listenForChanges({
    connect: options.connect,
    channel: options.channel,
    onChange: () => request('change', coalesceMs),
    // The full rebuild at start, and after every reconnection (whatever changed meanwhile was not heard).
    // LISTEN is in place before the snapshot is read, so no change can fall between the two.
    onListening: () => {
      request(listenedBefore ? 'reconnected' : 'start', 0);
      listenedBefore = true;
    },
    log,
    maxBackoffMs: maxRetry,
  });

  return {
    async stop() {
      stopping = true;
      if (timer) clearTimeout(timer);
      timer = undefined;
      await running;
      await listener.close();
      const last = client;
      client = undefined;
      await last?.end().catch(() => undefined);
    },
  };
}
