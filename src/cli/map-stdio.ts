import { readSync, writeSync } from 'node:fs';
import { PlexerError } from '../errors.js';
import type { MapIo } from '../protocol/rewrite-map.js';

// mod_rewrite closed the map's stdout (Apache stopped): nobody can be answered any more, so the map ends, 0.
export class StdoutClosedError extends PlexerError {
  constructor() {
    super('stdout closed by Apache', 0);
  }
}

const pause = new Int32Array(new SharedArrayBuffer(4));
const code = (error: unknown) => (error as NodeJS.ErrnoException).code;

// Blocking reads and writes on fds 0 and 1, for serveRewriteMapLoop. Apache's pipes are blocking, and
// process.stdin/stdout are never touched (Node would switch a pipe to non-blocking). Should a descriptor be
// non-blocking anyway (a shared file description), EAGAIN is waited out a millisecond at a time, never spun on.
export const stdioMapIo: MapIo = {
  read(buffer) {
    for (;;) {
      try {
        return readSync(0, buffer, 0, buffer.length, null);
      } catch (error) {
        if (code(error) === 'EAGAIN') Atomics.wait(pause, 0, 0, 1);
        else if (code(error) !== 'EINTR') throw error;
      }
    }
  },
  write(text) {
    const bytes = Buffer.from(text, 'latin1');
    let written = 0;
    while (written < bytes.length) {
      try {
        written += writeSync(1, bytes, written, bytes.length - written);
      } catch (error) {
        if (code(error) === 'EPIPE') throw new StdoutClosedError();
        if (code(error) === 'EAGAIN') Atomics.wait(pause, 0, 0, 1);
        else if (code(error) !== 'EINTR') throw error;
      }
    }
  },
};
