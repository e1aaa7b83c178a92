import { receiveMessageOnPort, type MessagePort } from 'node:worker_threads';
import { LRUCache } from 'lru-cache';
import { isAccountName, isUserName } from '../names.js';
import type { PrgMapKind } from '../store/map-queries.js';
import { applyChange } from './invalidation.js';
import { NO_ANSWER, answerCacheOptions, evictMatching, expireEvery, fallback, type Answer } from './resolver.js';

// An invalid key (empty, control characters, spaces, too long, non-ASCII) is answered with no value here and
// never reaches the cache, the store thread or SQL.
export function keyValidator(kind: PrgMapKind): (key: string) => boolean {
  return kind === 'settings' ? isAccountName : isUserName;
}

// What the store thread (src/lookup/store-thread.ts) tells the answering thread, in the order it happens there:
// replaying them keeps this thread's cache the same as the store thread's resolver cache.
export type StoreEvent =
  | { type: 'fresh'; key: string; value: Answer }
  | { type: 'change'; payload: string }
  | { type: 'listening' }
  // The store thread's first query has settled (connected and prepared, or failed).
  | { type: 'ready' }
  | { type: 'answer'; id: number; value: Answer };

export interface LookupRequest {
  id: number;
  key: string;
}

// The store thread posts every event on `port`, then adds 1 to signal[0] and wakes any Atomics.wait on it.
export interface StoreLink {
  port: MessagePort;
  signal: Int32Array;
}

export function postStoreEvent(link: StoreLink, event: StoreEvent): void {
  link.port.postMessage(event);
  Atomics.add(link.signal, 0, 1);
  Atomics.notify(link.signal, 0);
}

export interface MapLookupOptions {
  link: StoreLink;
  max: number;
  ttlMs: number;
  deadlineMs: number;
}

// The answering thread's side of a lookup, synchronous by design (it runs inside the blocking read/write loop):
// a fresh cached answer costs one Atomics.load and a cache get, nothing is woken. A miss asks the store thread,
// whose resolver brings single-flight, bounded queries and stale-if-error, and sleeps in Atomics.wait until an
// answer comes back or deadlineMs pass; then the stale entry, or no value.
export function createMapLookup(kind: PrgMapKind, options: MapLookupOptions): (key: string) => Answer {
  const { link, deadlineMs } = options;
  const isValidKey = keyValidator(kind);
  // ttlResolution 0: lru-cache otherwise keeps reading a cached clock until a 1 ms timer clears it, and this
  // thread never runs its event loop, so no entry would ever expire.
  const cache = new LRUCache<string, string>({ ...answerCacheOptions(options.max, options.ttlMs), ttlResolution: 0 });
  // The same operations as the store thread's resolver, applied in the same order.
  const copy = {
    evict: (key: string) => void cache.delete(key),
    evictWhere: (matches: (value: string) => boolean) => evictMatching(cache, matches),
    clear: () => cache.clear(),
  };
  let seen = 0;
  let lastId = 0;

  // Applies every event posted so far; returns the answer to request `id` if it was among them.
  const drain = (id: number): Answer | undefined => {
    let answer: Answer | undefined;
    for (let received = receiveMessageOnPort(link.port); received !== undefined; received = receiveMessageOnPort(link.port)) {
      const event = received.message as StoreEvent;
      if (event.type === 'fresh') cache.set(event.key, event.value ?? NO_ANSWER);
      else if (event.type === 'change') applyChange(kind, copy, event.payload);
      // Changes may have been missed: the resolver's expireAll, here.
      else if (event.type === 'listening') expireEvery(cache);
      else if (event.type === 'answer' && event.id === id) answer = event.value;
    }
    return answer;
  };
  // Loaded before draining: an event posted while draining moves the counter again and is picked up next time.
  const catchUp = (id: number): Answer | undefined => {
    const current = Atomics.load(link.signal, 0);
    if (current === seen) return undefined;
    seen = current;
    return drain(id);
  };

  return (key) => {
    if (!isValidKey(key)) return null;
    catchUp(0);
    const cached = cache.get(key);
    if (cached !== undefined) return cached === NO_ANSWER ? null : cached;
    const id = ++lastId;
    link.port.postMessage({ id, key } satisfies LookupRequest);
    const deadline = performance.now() + deadlineMs;
    for (;;) {
      const answer = catchUp(id);
      if (answer !== undefined) return answer;
      const left = deadline - performance.now();
      if (left <= 0) break;
      Atomics.wait(link.signal, 0, seen, left);
    }
    // The store thread's answer came too late (it is dropped when it arrives: its id is never asked again).
    return fallback(cache.get(key, { allowStale: true }));
  };
}
