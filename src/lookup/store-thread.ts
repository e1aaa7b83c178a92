// The map's store thread: the pg pool, LISTEN/NOTIFY and the resolver (single-flight, bounded queries,
// deadline, stale-if-error) run here, on an event loop of their own, so that the answering thread can block in
// read(2) and answer cache hits without waking anything. Started by src/cli/map.ts; speaks StoreEvent.
import { workerData, type MessagePort } from 'node:worker_threads';
import type { PlexerConfig } from '../config.js';
import { createLogger, setLogLevel } from '../log.js';
import { createClient, createPool } from '../store/connect.js';
import { listenForChanges } from '../store/listener.js';
import { fetchMapValue, type PrgMapKind } from '../store/map-queries.js';
import { changesChannel } from '../store/sql.js';
import { applyChange } from './invalidation.js';
import { postStoreEvent, type LookupRequest, type StoreLink } from './map-lookup.js';
import { createResolver } from './resolver.js';

export interface StoreThreadData {
  kind: PrgMapKind;
  config: PlexerConfig;
  port: MessagePort;
  signal: Int32Array;
}

const { kind, config, port, signal } = workerData as StoreThreadData;
const link: StoreLink = { port, signal };
setLogLevel(config.logLevel);
const log = createLogger(`map.${kind}`);
// As on the answering thread: the map must never stop answering on its own.
process.on('uncaughtException', (error) => log.error('unexpected error', { error: error.message }));
process.on('unhandledRejection', (error) => log.error('unexpected rejection', { error: String(error) }));

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
  onFresh: (key, value) => postStoreEvent(link, { type: 'fresh', key, value }),
  log,
});
listenForChanges({
  connect: () => createClient(config, { applicationName: `plexer-map-${kind}-listen`, connectTimeoutMs: 2_000 }),
  channel: changesChannel(config.schema),
  onChange: (payload) => {
    applyChange(kind, resolver, payload);
    postStoreEvent(link, { type: 'change', payload });
  },
  onListening: () => {
    resolver.expireAll();
    postStoreEvent(link, { type: 'listening' });
  },
  log,
});

port.on('message', ({ id, key }: LookupRequest) => {
  const answer = (value: string | null) => postStoreEvent(link, { type: 'answer', id, value });
  const pending = resolver.resolve(key);
  if (pending === null || typeof pending === 'string') answer(pending);
  else void pending.then(answer);
});

// Connect and prepare before Apache's first key arrives: a cold connection takes longer than the deadline,
// and that first lookup would otherwise be answered with no value.
fetchMapValue(pool, kind, '-')
  .catch(() => undefined)
  .finally(() => postStoreEvent(link, { type: 'ready' }));
