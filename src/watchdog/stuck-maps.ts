import { bytesWritten } from '../proc.js';
import { pipeBeingRead, pipeOf } from './processes.js';

// A map that keeps a worker waiting: a worker has been blocked reading the map's answer pipe while the map wrote
// nothing for `stuckMs`. A live map answers within map_deadline_ms (50 ms by default), so this is a map that is
// stopped (SIGSTOP), wedged, or spinning — and a worker waiting on it holds mod_rewrite's server-wide lock, so
// every lookup of the server waits with it. A graceful reload does not end that wait (the old map is never
// killed); killing the map does: the worker reads end-of-file, its request gets our 503, and the missing map is
// replaced by the reload that follows.
export interface StuckMapDetector {
  /** Returns the maps (of those given) found stuck at `nowMs`. */
  check(nowMs: number, maps: number[], workers: number[]): number[];
}

interface Watch {
  since: number;
  written: number;
}

export function createStuckMapDetector(stuckMs = 2_000): StuckMapDetector {
  const watches = new Map<number, Watch>();
  return {
    check(now, maps, workers) {
      const stuck: number[] = [];
      const waitedOn = new Set(workers.map(pipeBeingRead).filter((p) => p !== undefined));
      for (const map of maps) {
        const answers = pipeOf(map, 1);
        const written = bytesWritten(map);
        if (answers === undefined || written === null || !waitedOn.has(answers)) {
          watches.delete(map);
          continue;
        }
        const watch = watches.get(map);
        if (watch === undefined || watch.written !== written) {
          watches.set(map, { since: now, written });
        } else if (now - watch.since >= stuckMs) {
          stuck.push(map);
          watches.delete(map);
        }
      }
      for (const pid of watches.keys()) if (!maps.includes(pid)) watches.delete(pid);
      return stuck;
    },
  };
}
